//! The integration and conformance suites against glusterfs 11.x: the test
//! binaries cargo built for this run are run again inside a Debian 13
//! chroot (`tests/helpers/gluster11-root.sh` makes or reuses it), so the
//! glusterd servers, the gluster CLI and the FUSE client they start are
//! 11.x while the kernel, the driver binary and the tests are the same.
//!
//! The inner run gets a network namespace of its own (its loopback aliases
//! vanish with it and never meet other runs' address blocks), the host's
//! /proc, /sys, /dev, /tmp and the repository at the same paths, and a
//! TMPDIR of its own under /tmp, removed afterwards. Whatever
//! happens, the guard ends every process whose root is the chroot and
//! unmounts everything under it (what the tests mounted inside first, then
//! our own mounts), deepest first, lazily as a last resort.
//! Needs root and network access to Debian's mirror on the first run.

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use glusterfs_csi::gluster::version::Release;

/// Where the chroot lives unless `GLUSTERFS_CSI_GLUSTER11_ROOT` says.
const DEFAULT_ROOT: &str = "/var/tmp/glusterfs-csi-gluster11";
const ROOT_ENV: &str = "GLUSTERFS_CSI_GLUSTER11_ROOT";
/// Set for the inner run: a gluster11 test seeing it does not recurse.
const INSIDE_ENV: &str = "GLUSTERFS_CSI_GLUSTER11_INSIDE";
/// The suites run inside, in this order.
const SUITES: [&str; 2] = ["integration", "conformance"];
const INNER_LIMIT: Duration = Duration::from_secs(20 * 60);

#[test]
fn integration_and_conformance_pass_against_gluster_11() {
    if std::env::var_os(INSIDE_ENV).is_some() {
        eprintln!("already inside the gluster 11 chroot: not running it again");
        return;
    }
    let me = std::env::current_exe().unwrap();
    let suites: Vec<(&str, PathBuf)> = SUITES
        .iter()
        .map(|suite| {
            let binary = sibling_test_binary(&me, suite);
            assert_ne!(binary, me, "the gluster11 test would run itself");
            (*suite, binary)
        })
        .collect();

    let root = PathBuf::from(std::env::var_os(ROOT_ENV).unwrap_or_else(|| DEFAULT_ROOT.into()));
    assert!(root.is_absolute(), "{ROOT_ENV} must be absolute");
    let _lock = RootLock::take(&root);

    let started = Instant::now();
    let package = ensure_root(&root);
    // Canonical, as /proc/<pid>/root shows it.
    let root = root.canonicalize().unwrap();
    let release = release_in(&root);
    assert_eq!(
        release.major, 11,
        "the chroot runs glusterfs {release} (package {package}), not 11.x"
    );
    let setup = started.elapsed();

    let mut lines = vec![format!(
        "gluster11: glusterfs {release} (Debian package {package}) in {}; chroot ready in {:.1} s",
        root.display(),
        setup.as_secs_f64()
    )];
    let session = Session::enter(&root);
    for (suite, binary) in &suites {
        let started = Instant::now();
        let run = session.run(binary);
        let took = started.elapsed();
        assert!(
            run.success,
            "{suite} against glusterfs {release} failed ({}) after {:.1} s:\n--- stdout ---\n{}\n--- stderr ---\n{}",
            run.status,
            took.as_secs_f64(),
            run.stdout,
            run.stderr
        );
        let passed = passed_count(&run.stdout);
        assert!(
            passed > 0,
            "{suite} ran no test inside the chroot:\n{}",
            run.stdout
        );
        lines.push(format!(
            "gluster11: {suite} ({}): {passed} passed against glusterfs {release} in {:.1} s",
            binary.file_name().unwrap().to_string_lossy(),
            took.as_secs_f64()
        ));
    }
    let left = session.teardown();
    assert!(left.is_empty(), "still mounted in the chroot: {left:?}");
    drop(session);
    // Straight to stderr, past the test harness's capture: CI logs show it.
    let _ = writeln!(std::io::stderr(), "{}", lines.join("\n"));
}

/// The newest `<suite>-<16 hex digits>` executable next to this test binary
/// (cargo builds every test target before it runs any).
fn sibling_test_binary(me: &Path, suite: &str) -> PathBuf {
    let deps = me.parent().unwrap();
    let newest = std::fs::read_dir(deps)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            name.strip_prefix(suite)
                .and_then(|rest| rest.strip_prefix('-'))
                .is_some_and(|hash| {
                    hash.len() == 16
                        && hash
                            .bytes()
                            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                })
        })
        .filter_map(|entry| {
            let meta = entry.metadata().ok()?;
            use std::os::unix::fs::PermissionsExt;
            (meta.is_file() && meta.permissions().mode() & 0o111 != 0)
                .then(|| Some((meta.modified().ok()?, entry.path())))?
        })
        .max();
    newest
        .unwrap_or_else(|| {
            panic!(
                "no {suite}-<hash> test binary in {}: build it too (cargo test --release builds \
                 every test target; with --test gluster11 add --test {suite})",
                deps.display()
            )
        })
        .1
}

/// An exclusive flock on `<root>.lock`, held while the chroot is made and
/// used (capture-gluster11.sh takes the same one).
struct RootLock {
    _file: File,
}

impl RootLock {
    fn take(root: &Path) -> RootLock {
        let mut path = root.as_os_str().to_owned();
        path.push(".lock");
        if let Some(parent) = root.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        let file = File::create(&path).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30 * 60);
        // SAFETY: flock on a descriptor we own.
        while unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            assert!(
                Instant::now() < deadline,
                "{} stayed locked for 30 min",
                Path::new(&path).display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        RootLock { _file: file }
    }
}

/// Runs the chroot maker; returns the glusterfs-server package version.
fn ensure_root(root: &Path) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/helpers/gluster11-root.sh");
    let output = Command::new("bash")
        .arg(&script)
        .arg(root)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{} {} failed ({}):\n{stderr}",
        script.display(),
        root.display(),
        output.status
    );
    if !stderr.is_empty() {
        let _ = std::io::stderr().write_all(stderr.as_bytes());
    }
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// `glusterfs --version` inside the chroot.
fn release_in(root: &Path) -> Release {
    let output = Command::new("chroot")
        .arg(root)
        .args(["glusterfs", "--version"])
        .env("PATH", INNER_PATH)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    Release::parse_version_output(&text)
        .unwrap_or_else(|| panic!("glusterfs --version in the chroot: {text:?}"))
}

const INNER_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

struct InnerRun {
    success: bool,
    status: String,
    stdout: String,
    stderr: String,
}

/// The chroot with the host's file systems mounted in; dropping it ends
/// everything that ran inside and unmounts everything under the root.
struct Session {
    root: PathBuf,
    manifest_dir: PathBuf,
    /// Mount ids of what `enter` mounted (the recursive binds' submounts too).
    ours: Vec<u64>,
    /// The inner run's TMPDIR, under the host's /tmp: what a killed test
    /// leaves there goes with it.
    tmp: Option<tempfile::TempDir>,
}

impl Session {
    fn enter(root: &Path) -> Session {
        let mut session = Session {
            root: root.to_path_buf(),
            manifest_dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")),
            ours: Vec::new(),
            tmp: None,
        };
        // Nothing may run or be mounted there yet: a crashed run's leftovers go first.
        let left = session.teardown();
        assert!(left.is_empty(), "still mounted in the chroot: {left:?}");
        let inside = |path: &Path| root.join(path.strip_prefix("/").unwrap());
        let propagation_private = libc::MS_PRIVATE | libc::MS_REC;
        let propagation_slave = libc::MS_SLAVE | libc::MS_REC;
        // The root a mount point of its own: each dev glusterd makes its
        // mount namespace's `/` a slave (src/dev/cluster.rs), which needs
        // `/` to be a mount, inside the chroot too.
        if !session.root_is_mounted() {
            mount(Some(root), root, None, libc::MS_BIND);
            mount(None, root, None, libc::MS_PRIVATE);
        }
        mount(
            Some(Path::new("proc")),
            &inside(Path::new("/proc")),
            Some("proc"),
            0,
        );
        for host in ["/sys", "/dev"] {
            let target = inside(Path::new(host));
            mount(
                Some(Path::new(host)),
                &target,
                None,
                libc::MS_BIND | libc::MS_REC,
            );
            mount(None, &target, None, propagation_slave);
        }
        // Not recursive: other runs' mounts under the host's /tmp stay out.
        let mut binds = vec![PathBuf::from("/tmp"), session.manifest_dir.clone()];
        let target_dir = std::env::current_exe()
            .unwrap()
            .ancestors()
            .nth(3)
            .unwrap()
            .to_path_buf();
        if !target_dir.starts_with(&session.manifest_dir) {
            binds.push(target_dir);
        }
        for host in binds {
            let target = inside(&host);
            std::fs::create_dir_all(&target).unwrap();
            mount(Some(&host), &target, None, libc::MS_BIND);
            mount(None, &target, None, propagation_private);
        }
        session.ours = session.mounts().into_iter().map(|m| m.id).collect();
        session.tmp = Some(
            tempfile::Builder::new()
                .prefix("glusterfs-csi-gluster11-")
                .tempdir_in("/tmp")
                .unwrap(),
        );
        session
    }

    /// Runs a test binary inside the chroot, in a network namespace of its
    /// own, with its working directory the repository as cargo gives it.
    fn run(&self, binary: &Path) -> InnerRun {
        let root = CString::new(self.root.as_os_str().as_bytes()).unwrap();
        let cwd = CString::new(self.manifest_dir.as_os_str().as_bytes()).unwrap();
        let mut command = Command::new("/bin/sh");
        command
            .arg("-c")
            // A new network namespace starts with lo down.
            .arg(r#"ip link set lo up && exec "$0" "$@""#)
            .arg(binary)
            // By hand: only the inner tests whose names hold these words.
            .args(
                std::env::var("GLUSTERFS_CSI_GLUSTER11_FILTER")
                    .unwrap_or_default()
                    .split_whitespace(),
            )
            .env("PATH", INNER_PATH)
            .env(INSIDE_ENV, "1")
            .env("TMPDIR", self.tmp.as_ref().unwrap().path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: only syscalls on memory allocated before the fork.
        unsafe {
            command.pre_exec(move || {
                if libc::unshare(libc::CLONE_NEWNET) != 0
                    || libc::chroot(root.as_ptr()) != 0
                    || libc::chdir(cwd.as_ptr()) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command.spawn().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let out = std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = stdout.read_to_end(&mut text);
            String::from_utf8_lossy(&text).into_owned()
        });
        let err = std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = stderr.read_to_end(&mut text);
            String::from_utf8_lossy(&text).into_owned()
        });
        let deadline = Instant::now() + INNER_LIMIT;
        let (success, status) = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break (status.success(), status.to_string());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break (false, format!("killed after {INNER_LIMIT:?}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        // Daemons left behind would keep the pipes open: end them first.
        self.end_processes();
        InnerRun {
            success,
            status,
            stdout: out.join().unwrap(),
            stderr: err.join().unwrap(),
        }
    }

    /// Processes whose root directory is the chroot.
    fn processes(&self) -> Vec<i32> {
        let me = std::process::id() as i32;
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| *pid != me)
            .filter(|pid| {
                std::fs::read_link(format!("/proc/{pid}/root")).is_ok_and(|r| r == self.root)
            })
            .collect()
    }

    fn root_is_mounted(&self) -> bool {
        let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        glusterfs_csi::mount::mountinfo::parse(&text)
            .iter()
            .any(|m| m.mount_point == self.root)
    }

    /// Mounts under the root (not the root itself).
    fn mounts(&self) -> Vec<glusterfs_csi::mount::MountEntry> {
        let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        glusterfs_csi::mount::mountinfo::parse(&text)
            .into_iter()
            .filter(|m| m.mount_point.starts_with(&self.root) && m.mount_point != self.root)
            .collect()
    }

    /// Unmounts what the tests mounted inside, then ends every process in
    /// the chroot: SIGTERM, then SIGKILL for what remains after 10 s.
    fn end_processes(&self) {
        self.unmount(|id| !self.ours.contains(&id));
        for _ in 0..5 {
            let pids = self.processes();
            if pids.is_empty() {
                break;
            }
            eprintln!("gluster11: ending processes left in the chroot: {pids:?}");
            for pid in &pids {
                // SAFETY: a plain kill(2).
                unsafe { libc::kill(*pid, libc::SIGTERM) };
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while pids.iter().any(|p| alive(*p)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            for pid in pids.iter().filter(|p| alive(**p)) {
                // SAFETY: a plain kill(2).
                unsafe { libc::kill(*pid, libc::SIGKILL) };
            }
        }
        // Mounted while the processes were ending.
        self.unmount(|id| !self.ours.contains(&id));
    }

    /// Unmounts the mounts under the root that `pick` chooses, deepest (and,
    /// at one mount point, newest) first, lazily if a plain unmount fails;
    /// returns the mount points still there.
    fn unmount(&self, pick: impl Fn(u64) -> bool) -> Vec<PathBuf> {
        for _ in 0..5 {
            let mut mounts: Vec<_> = self.mounts().into_iter().filter(|m| pick(m.id)).collect();
            if mounts.is_empty() {
                break;
            }
            mounts.sort_by_key(|m| std::cmp::Reverse((m.mount_point.components().count(), m.id)));
            for m in mounts {
                let path = CString::new(m.mount_point.as_os_str().as_bytes()).unwrap();
                // SAFETY: umount2 with a valid C string.
                if unsafe { libc::umount2(path.as_ptr(), 0) } != 0 {
                    // SAFETY: as above; detached as the last resort.
                    unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
                }
            }
        }
        self.mounts()
            .into_iter()
            .filter(|m| pick(m.id))
            .map(|m| m.mount_point)
            .collect()
    }

    /// Ends what runs inside, then unmounts everything under the root.
    fn teardown(&self) -> Vec<PathBuf> {
        self.end_processes();
        self.unmount(|_| true)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let left = self.teardown();
        if left.is_empty() && self.root_is_mounted() {
            let path = CString::new(self.root.as_os_str().as_bytes()).unwrap();
            // SAFETY: umount2 with a valid C string; detached if busy.
            if unsafe { libc::umount2(path.as_ptr(), 0) } != 0 {
                unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
            }
        }
        if !left.is_empty() {
            eprintln!("gluster11: WARNING: still mounted in the chroot: {left:?}");
            // Never delete a tree something may still be mounted in.
            if let Some(tmp) = self.tmp.take() {
                eprintln!("gluster11: leaving {}", tmp.keep().display());
            }
        }
    }
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

/// `mount(2)`; panics naming the target when it fails.
fn mount(source: Option<&Path>, target: &Path, fstype: Option<&str>, flags: libc::c_ulong) {
    let c = |bytes: &[u8]| CString::new(bytes).unwrap();
    let source = source.map(|s| c(s.as_os_str().as_bytes()));
    let target_c = c(target.as_os_str().as_bytes());
    let fstype = fstype.map(|f| c(f.as_bytes()));
    let ptr = |s: &Option<CString>| s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
    // SAFETY: valid C strings or null, no data argument.
    let rc = unsafe {
        libc::mount(
            ptr(&source),
            target_c.as_ptr(),
            ptr(&fstype),
            flags,
            std::ptr::null(),
        )
    };
    assert_eq!(
        rc,
        0,
        "mount {source:?} on {} ({fstype:?}, flags {flags:#x}): {}",
        target.display(),
        std::io::Error::last_os_error()
    );
}

/// The `N passed` of libtest's `test result:` line.
fn passed_count(stdout: &str) -> usize {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("test result: "))
        .filter_map(|l| l.split("; ").find_map(|p| p.trim().strip_suffix(" passed")))
        .filter_map(|n| n.rsplit(' ').next()?.parse::<usize>().ok())
        .sum()
}

//! Putting a fresh mount where a dead one is still visible.
//!
//! When a FUSE client dies, every bind mount made from its mount keeps the
//! dead file system: the kubelet's target paths, and the copies inside each
//! running container's own mount namespace (with private propagation, a
//! remount on the host never reaches them). After the staging path is
//! mounted again, each of those mounts is found by the dead file system's
//! device number and replaced, in its own namespace, by a detached clone of
//! the fresh mount (`open_tree` + `move_mount`; a classic bind cannot take a
//! source from another namespace).
//!
//! In another namespace, a dead mount at the same path as one of the
//! plugin's own mounts of the dead or the fresh file system is left alone:
//! it is a copy of ours (inherited by a process that unshared its mounts,
//! or propagated into a container that mirrors a host path), not a
//! container's view of the volume. Where mounts propagate, our remount
//! reaches it by itself; where they do not, giving it a clone would pin
//! the fresh FUSE client for as long as that namespace lives, after the
//! volume is unstaged. Containers' views live at their own paths.
//!
//! Nothing is trusted by path alone: each mount is opened beneath the
//! owning process's root without following magic links and checked by mount
//! id against that namespace's mountinfo (where it showed the dead device)
//! before it is detached, and the clone is attached on exactly the directory
//! it covered.

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::fd::{attach, mount_setattr, open_child, open_path, open_tree, openat2, relative};
use super::mountinfo::{self, MountEntry};

/// Longest mountinfo read from another process.
const MOUNTINFO_LIMIT: u64 = 16 << 20;
/// How long one namespace's repair may take before it is reported failed.
const NAMESPACE_TIMEOUT: Duration = Duration::from_secs(20);

/// The file system of a dead FUSE mount: what its bind mounts share. Kept
/// in the staging record while a heal waits to finish (the device number
/// stays taken while any mount of it is left).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeadFileSystem {
    /// `major:minor` as mountinfo shows it.
    pub device: String,
    pub fs_type: String,
    pub source: String,
}

impl DeadFileSystem {
    pub fn of(mount: &MountEntry) -> DeadFileSystem {
        DeadFileSystem {
            device: mount.device.clone(),
            fs_type: mount.fs_type.clone(),
            source: mount.source.clone(),
        }
    }

    fn is(&self, mount: &MountEntry) -> bool {
        mount.device == self.device && mount.fs_type == self.fs_type && mount.source == self.source
    }
}

/// One mount put back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplacedMount {
    /// `None` for the plugin's own mount namespace.
    pub pid: Option<i32>,
    /// Processes sharing that namespace.
    pub processes: usize,
    /// Kubernetes pod UID, when the process's cgroup names one.
    pub pod: Option<String>,
    pub mount_point: PathBuf,
}

/// What a repair did, and what it could not do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepairReport {
    pub replaced: Vec<ReplacedMount>,
    pub failures: Vec<String>,
}

/// Replaces every mount of the dead file system `dead` (other than
/// `fresh` itself) in this process's mount namespace and in every other
/// namespace on the node, with a clone of the live mount at `fresh`.
/// Blocking; run it off the async runtime.
pub fn replace_dead_mounts(dead: &DeadFileSystem, fresh: &Path) -> RepairReport {
    let mut report = RepairReport::default();
    let fresh_root = match open_path(fresh, libc::O_DIRECTORY) {
        Ok(fd) => fd,
        Err(e) => {
            report
                .failures
                .push(format!("opening the fresh mount {}: {e}", fresh.display()));
            return report;
        }
    };
    let own = namespace_of("self");
    let own_text = match std::fs::read_to_string("/proc/self/mountinfo") {
        Ok(text) => text,
        Err(e) => {
            report.failures.push(format!("reading mountinfo: {e}"));
            String::new()
        }
    };
    let own_victims = victims(&own_text, dead, Some(fresh), &HashSet::new());
    let ours = own_mount_points(&own_text, dead, fresh);
    if !own_victims.is_empty() {
        let job = Job {
            pid: None,
            processes: 1,
            victims: own_victims,
        };
        run_job(job, &fresh_root, &mut report);
    }
    for job in other_namespaces(own.as_deref(), dead, &ours) {
        run_job(job, &fresh_root, &mut report);
    }
    report
}

/// Where the plugin's own namespace has a mount of the dead or the fresh
/// file system (the one at `fresh`).
fn own_mount_points(text: &str, dead: &DeadFileSystem, fresh: &Path) -> HashSet<PathBuf> {
    let mounts = mountinfo::parse(text);
    let fresh_device = mounts
        .iter()
        .rev()
        .find(|m| m.mount_point == fresh)
        .map(|m| m.device.clone());
    mounts
        .into_iter()
        .filter(|m| dead.is(m) || Some(&m.device) == fresh_device.as_ref())
        .map(|m| m.mount_point)
        .collect()
}

/// Mounts of `dead`'s file system in a mountinfo text, shallowest first,
/// but for the one at `except` and those at a path in `copies`.
fn victims(
    text: &str,
    dead: &DeadFileSystem,
    except: Option<&Path>,
    copies: &HashSet<PathBuf>,
) -> Vec<MountEntry> {
    let mut found: Vec<MountEntry> = mountinfo::parse(text)
        .into_iter()
        .filter(|m| {
            dead.is(m)
                && Some(m.mount_point.as_path()) != except
                && !copies.contains(&m.mount_point)
        })
        .collect();
    found.sort_by_key(|m| m.mount_point.components().count());
    found
}

/// The mounts to replace in one namespace, and one process in it.
struct Job {
    pid: Option<i32>,
    processes: usize,
    victims: Vec<MountEntry>,
}

fn namespace_of(pid: &str) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/ns/mnt"))
        .ok()
        .map(|l| l.to_string_lossy().into_owned())
}

/// Every other mount namespace in which the dead file system is mounted.
fn other_namespaces(own: Option<&str>, dead: &DeadFileSystem, ours: &HashSet<PathBuf>) -> Vec<Job> {
    let mut jobs: HashMap<String, Job> = HashMap::new();
    let mut clean: std::collections::HashSet<String> = Default::default();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        // Unreadable (exited, or refused to us): not ours to repair.
        let Some(namespace) = namespace_of(&pid.to_string()) else {
            continue;
        };
        if Some(namespace.as_str()) == own || clean.contains(&namespace) {
            continue;
        }
        if let Some(job) = jobs.get_mut(&namespace) {
            job.processes += 1;
            continue;
        }
        let mut text = String::new();
        let read = std::fs::File::open(format!("/proc/{pid}/mountinfo"))
            .and_then(|f| f.take(MOUNTINFO_LIMIT).read_to_string(&mut text));
        if read.is_err() {
            continue;
        }
        let found = victims(&text, dead, None, ours);
        if found.is_empty() {
            clean.insert(namespace);
        } else {
            jobs.insert(
                namespace,
                Job {
                    pid: Some(pid),
                    processes: 1,
                    victims: found,
                },
            );
        }
    }
    jobs.into_values().collect()
}

/// Repairs one namespace on a thread of its own (entering a mount
/// namespace changes the calling thread for good).
fn run_job(job: Job, fresh_root: &OwnedFd, report: &mut RepairReport) {
    let what = match job.pid {
        Some(pid) => format!("mount namespace of process {pid}"),
        None => "the plugin's mount namespace".to_string(),
    };
    let pod = job.pid.and_then(pod_of);
    let fresh = match fresh_root.try_clone() {
        Ok(fd) => fd,
        Err(e) => {
            report.failures.push(format!("{what}: {e}"));
            return;
        }
    };
    let (done, results) = std::sync::mpsc::channel();
    let pid = job.pid;
    let victims = job.victims;
    let spawned = std::thread::Builder::new()
        .name("mount-repair".into())
        .spawn(move || {
            let _ = done.send(repair_namespace(pid, &fresh, &victims));
        });
    if let Err(e) = spawned {
        report
            .failures
            .push(format!("{what}: starting a thread: {e}"));
        return;
    }
    match results.recv_timeout(NAMESPACE_TIMEOUT) {
        Ok(outcomes) => {
            for outcome in outcomes {
                match outcome {
                    Ok(mount_point) => report.replaced.push(ReplacedMount {
                        pid: job.pid,
                        processes: job.processes,
                        pod: pod.clone(),
                        mount_point,
                    }),
                    Err(e) => report.failures.push(format!("{what}: {e}")),
                }
            }
        }
        Err(_) => report.failures.push(format!(
            "{what}: no answer within {}s",
            NAMESPACE_TIMEOUT.as_secs()
        )),
    }
}

/// Descriptors opened in the plugin's own namespace, used after entering
/// the target one.
struct Anchors {
    /// The owning process's root: paths in its mountinfo are relative to it.
    root: OwnedFd,
    /// This thread's `/proc/thread-self/fd` and `fdinfo` (our procfs).
    fd_dir: OwnedFd,
    fdinfo_dir: OwnedFd,
}

fn repair_namespace(
    pid: Option<i32>,
    fresh: &OwnedFd,
    victims: &[MountEntry],
) -> Vec<Result<PathBuf, String>> {
    let anchors = match open_anchors(pid) {
        Ok(a) => a,
        Err(e) => return vec![Err(format!("preparing: {e}"))],
    };
    // Clones are made here, in the namespace the fresh mount belongs to.
    let trees: Vec<io::Result<OwnedFd>> = victims
        .iter()
        .map(|v| clone_of(fresh, &v.root, v, pid.is_some()))
        .collect();
    if let Some(pid) = pid
        && let Err(e) = enter_namespace(pid)
    {
        return vec![Err(format!("entering it: {e}"))];
    }
    // Old mount id -> id of the clone that took its place.
    let mut replaced: HashMap<u64, u64> = HashMap::new();
    victims
        .iter()
        .zip(trees)
        .map(|(victim, tree)| {
            let tree = tree.map_err(|e| {
                format!(
                    "{}: cloning {} of the fresh mount: {e}",
                    victim.mount_point.display(),
                    victim.root.display()
                )
            })?;
            replace(victim, tree, &anchors, &mut replaced)
                .map(|()| victim.mount_point.clone())
                .map_err(|e| format!("{}: {e}", victim.mount_point.display()))
        })
        .collect()
}

fn open_anchors(pid: Option<i32>) -> io::Result<Anchors> {
    let root = match pid {
        Some(pid) => open_path(Path::new(&format!("/proc/{pid}/root")), libc::O_DIRECTORY)?,
        None => open_path(Path::new("/"), libc::O_DIRECTORY)?,
    };
    // Make cwd and root this thread's own before anything changes them.
    // SAFETY: unshare only affects the calling thread's fs_struct here.
    if unsafe { libc::unshare(libc::CLONE_FS) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Anchors {
        root,
        fd_dir: open_path(Path::new("/proc/thread-self/fd"), libc::O_DIRECTORY)?,
        fdinfo_dir: open_path(Path::new("/proc/thread-self/fdinfo"), libc::O_DIRECTORY)?,
    })
}

fn enter_namespace(pid: i32) -> io::Result<()> {
    let namespace = std::fs::File::open(format!("/proc/{pid}/ns/mnt"))?;
    // SAFETY: setns on a namespace descriptor we own; this thread's fs_struct
    // is unshared, so only this thread moves.
    if unsafe { libc::setns(namespace.as_raw_fd(), libc::CLONE_NEWNS) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A detached clone of `root` (a directory inside the fresh mount), with
/// the victim's per-mount flags; private when it goes to another namespace,
/// as the container runtime made the original.
fn clone_of(
    fresh: &OwnedFd,
    root: &Path,
    victim: &MountEntry,
    foreign: bool,
) -> io::Result<OwnedFd> {
    let inside = relative(root)?;
    let source = if inside.as_os_str().is_empty() {
        fresh.try_clone()?
    } else {
        openat2(
            fresh.as_raw_fd(),
            &inside,
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_XDEV,
        )?
    };
    let tree = open_tree(
        source.as_raw_fd(),
        c"",
        libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC | libc::AT_EMPTY_PATH as u32,
    )?;
    let mut attr_set = 0;
    for (option, flag) in [
        ("ro", libc::MOUNT_ATTR_RDONLY),
        ("nosuid", libc::MOUNT_ATTR_NOSUID),
        ("nodev", libc::MOUNT_ATTR_NODEV),
        ("noexec", libc::MOUNT_ATTR_NOEXEC),
    ] {
        if victim.mount_options.iter().any(|o| o == option) {
            attr_set |= flag;
        }
    }
    let attr = libc::mount_attr {
        attr_set,
        attr_clr: 0,
        propagation: if foreign { libc::MS_PRIVATE } else { 0 },
        userns_fd: 0,
    };
    if attr_set != 0 || foreign {
        mount_setattr(tree.as_raw_fd(), &attr)?;
    }
    Ok(tree)
}

/// Swaps one dead mount for `tree`, in the namespace this thread is in.
fn replace(
    victim: &MountEntry,
    tree: OwnedFd,
    anchors: &Anchors,
    replaced: &mut HashMap<u64, u64>,
) -> io::Result<()> {
    let inside = relative(&victim.mount_point)?;
    let (Some(parent), Some(name)) = (inside.parent(), inside.file_name()) else {
        return Err(io::Error::other("refusing to replace a root mount"));
    };
    let parent_dir = openat2(
        anchors.root.as_raw_fd(),
        parent,
        libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    )?;
    let at = open_child(&parent_dir, name)?;
    let found = mount_id(&anchors.fdinfo_dir, &at)?;
    if found == victim.id {
        let stacked = !detach(&at, anchors)?;
        let target = if stacked {
            at
        } else {
            let target = open_child(&parent_dir, name)?;
            if mount_id(&anchors.fdinfo_dir, &target)? != victim.parent {
                return Err(io::Error::other(
                    "the directory under it is not where it was mounted",
                ));
            }
            target
        };
        attach(&tree, &target)?;
    } else if replaced.get(&victim.parent) == Some(&found) {
        // Nested in a dead mount replaced just before: it went with it.
        attach(&tree, &at)?;
    } else {
        return Err(io::Error::other(format!(
            "mount {} is no longer there (found mount {found})",
            victim.id
        )));
    }
    replaced.insert(victim.id, mount_id(&anchors.fdinfo_dir, &tree)?);
    Ok(())
}

/// Detaches the mount `at` is the root of. Returns false when the kernel
/// refuses (a mount locked into a user namespace): the clone then goes on
/// top of it.
fn detach(at: &OwnedFd, anchors: &Anchors) -> io::Result<bool> {
    // umount2 takes only a path: `/proc/thread-self/fd/N` of our own procfs
    // names exactly the mount `at` holds, whatever the paths in between.
    // SAFETY: fchdir on a descriptor we own; fs_struct is this thread's.
    if unsafe { libc::fchdir(anchors.fd_dir.as_raw_fd()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let link = CString::new(at.as_raw_fd().to_string()).map_err(io::Error::other)?;
    // SAFETY: plain syscall with a valid C string.
    if unsafe { libc::umount2(link.as_ptr(), libc::MNT_DETACH) } == 0 {
        return Ok(true);
    }
    let error = io::Error::last_os_error();
    if error.raw_os_error() == Some(libc::EINVAL) {
        return Ok(false);
    }
    Err(io::Error::other(format!("detaching it: {error}")))
}

/// The mount id a descriptor is on, from this thread's fdinfo (asks nothing
/// of the file system, so it works on a dead FUSE mount too).
fn mount_id(fdinfo_dir: &OwnedFd, fd: &OwnedFd) -> io::Result<u64> {
    let name = CString::new(fd.as_raw_fd().to_string()).map_err(io::Error::other)?;
    // SAFETY: openat with a valid descriptor and C string.
    let info = unsafe {
        libc::openat(
            fdinfo_dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if info < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nobody else owns.
    let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(info) });
    let mut text = String::new();
    file.by_ref().take(4096).read_to_string(&mut text)?;
    text.lines()
        .find_map(|l| l.strip_prefix("mnt_id:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| io::Error::other("no mnt_id in fdinfo"))
}

/// The pod UID in a process's cgroup path (`.../pod<uid>/...` or
/// `...-pod<uid_with_underscores>.slice`), if any.
pub fn pod_of(pid: i32) -> Option<String> {
    let mut text = String::new();
    std::fs::File::open(format!("/proc/{pid}/cgroup"))
        .ok()?
        .take(64 * 1024)
        .read_to_string(&mut text)
        .ok()?;
    pod_in_cgroup(&text)
}

fn pod_in_cgroup(text: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| l.splitn(3, ':').nth(2))
        .flat_map(|path| path.split('/'))
        .find_map(|part| {
            let after = part.rsplit_once("pod").map(|(_, a)| a)?;
            let uid = after.trim_end_matches(".slice").replace('_', "-");
            let shape = uid.len() == 36 && uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
            shape.then_some(uid)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_from_cgroup_paths() {
        let cgroupfs = "0::/kubepods/besteffort/pod0b1e2f3a-1111-2222-3333-444455556666/abc\n";
        assert_eq!(
            pod_in_cgroup(cgroupfs).as_deref(),
            Some("0b1e2f3a-1111-2222-3333-444455556666")
        );
        let systemd = "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0b1e2f3a_1111_2222_3333_444455556666.slice/cri-containerd-x.scope\n";
        assert_eq!(
            pod_in_cgroup(systemd).as_deref(),
            Some("0b1e2f3a-1111-2222-3333-444455556666")
        );
        assert_eq!(pod_in_cgroup("0::/user.slice/session-1.scope\n"), None);
    }

    #[test]
    fn victims_are_the_dead_file_system_shallowest_first() {
        let text = "\
30 1 0:50 / /k/staging rw - fuse.glusterfs s:/v rw
31 1 0:50 /sub /k/pods/a/deep/mount rw - fuse.glusterfs s:/v rw
32 1 0:50 / /k/pods/b rw - fuse.glusterfs s:/v rw
33 1 0:51 / /k/pods/c rw - fuse.glusterfs s:/v rw
34 1 0:50 / /k/other rw - tmpfs tmpfs rw";
        let dead = DeadFileSystem::of(&mountinfo::parse(text)[0]);
        let found: Vec<u64> = victims(text, &dead, Some(Path::new("/k/staging")), &HashSet::new())
            .iter()
            .map(|m| m.id)
            .collect();
        assert_eq!(found, [32, 31]);
    }

    #[test]
    fn copies_of_our_own_mounts_are_not_another_namespaces_views() {
        // Ours after the remount: the fresh staging mount (0:52), a target
        // still on the dead client (0:50), an unrelated mount.
        let own = "\
40 1 0:52 / /k/staging rw - fuse.glusterfs s:/v rw
41 1 0:50 / /k/pods/a/target rw - fuse.glusterfs s:/v rw
42 1 0:53 / /k/else rw - fuse.glusterfs s:/w rw";
        let dead = DeadFileSystem {
            device: "0:50".into(),
            fs_type: "fuse.glusterfs".into(),
            source: "s:/v".into(),
        };
        let ours = own_mount_points(own, &dead, Path::new("/k/staging"));
        let expected: HashSet<PathBuf> = ["/k/staging", "/k/pods/a/target"]
            .iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(ours, expected);
        // Another namespace: copies at our paths, and a container's view.
        let theirs = "\
50 1 0:50 / /k/staging rw - fuse.glusterfs s:/v rw
51 1 0:50 / /k/pods/a/target rw - fuse.glusterfs s:/v rw
52 1 0:50 /sub /data rw - fuse.glusterfs s:/v rw";
        let found: Vec<u64> = victims(theirs, &dead, None, &ours)
            .iter()
            .map(|m| m.id)
            .collect();
        assert_eq!(found, [52]);
    }
}

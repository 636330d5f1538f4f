//! What the node itself offers: brick roots, FUSE, the kubelet directory's
//! mount propagation, a disciplined clock.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Check, blocking, bytes};
use crate::bricks::root;
use crate::controller::{BrickRootProblem, BrickRootReport};
use crate::mount::mountinfo::{self, MountEntry};
use crate::mount::{self as mounting, FUSE_DEVICE, MOUNT_HELPER};

pub const FUSE: &str = "fuse";
pub const MOUNT_GLUSTERFS: &str = "mount.glusterfs";
pub const KUBELET_DIR: &str = "kubelet dir";
pub const CLOCK: &str = "clock";

pub fn brick_root_name(root: &str) -> String {
    format!("brick root {root}")
}

/// What the brick agent would see: [`root::inspect`], judged by
/// [`BrickRootProblem::of`], plus free space.
pub async fn brick_root(
    root: String,
    allow_root_filesystem: bool,
    min_free_bytes: u64,
    limit: Duration,
) -> Check {
    let path = PathBuf::from(&root);
    match blocking(limit, move || root::inspect(&path)).await {
        Ok(Ok(report)) => judge_brick_root(&root, &report, allow_root_filesystem, min_free_bytes),
        Ok(Err(e)) => Check::fail(
            brick_root_name(&root),
            format!("cannot inspect it: {e}"),
            "run doctor as root, with the brick root mounted where the node plugin sees it",
        ),
        Err(_) => Check::timed_out(brick_root_name(&root), &format!("inspecting {root}"), limit),
    }
}

pub fn judge_brick_root(
    root: &str,
    report: &BrickRootReport,
    allow_root_filesystem: bool,
    min_free_bytes: u64,
) -> Check {
    let name = brick_root_name(root);
    let file_system = if report.own_file_system {
        format!(
            "{} {} mounted here",
            report.file_system_type, report.file_system_source
        )
    } else {
        report.whereabouts()
    };
    match BrickRootProblem::of(report, allow_root_filesystem) {
        Some(BrickRootProblem::Missing) => {
            return Check::fail(
                name,
                "does not exist",
                format!(
                    "mount the brick disk at {root} (or create the directory, with \
                     --allow-root-filesystem-bricks); in Kubernetes the node plugin must see \
                     it too (chart values storageClasses[].parameters.brickRoot or \
                     node.extraBrickRoots)"
                ),
            );
        }
        Some(BrickRootProblem::NotADirectory) => {
            return Check::fail(
                name,
                "is not a directory",
                format!("remove what is at {root} and mount the brick disk there"),
            );
        }
        Some(BrickRootProblem::NotOwnFileSystem) => {
            return Check::fail(
                name,
                format!("not a file system of its own: it is {file_system}"),
                format!(
                    "mount the brick disk at {root}, or {}",
                    crate::controller::error::ALLOW_ROOT_FILESYSTEM_HINT
                ),
            );
        }
        None => {}
    }
    let allowed = if report.own_file_system {
        ""
    } else {
        " (allowed: --allow-root-filesystem-bricks)"
    };
    let space = format!(
        "{} free of {}",
        bytes(report.available_bytes),
        bytes(report.total_bytes)
    );
    if report.available_bytes < min_free_bytes {
        return Check::fail(
            name,
            format!("{file_system}{allowed}; only {space}"),
            format!(
                "free space there or grow the file system (at least {} wanted: \
                 --min-free-gib)",
                bytes(min_free_bytes)
            ),
        );
    }
    Check::ok(name, format!("{file_system}{allowed}; {space}"))
}

/// The node's readiness check on /dev/fuse.
pub async fn fuse(limit: Duration) -> Check {
    match blocking(limit, || {
        mounting::fuse_device_usable(Path::new(FUSE_DEVICE))
    })
    .await
    {
        Ok(result) => judge_fuse(result),
        Err(_) => Check::timed_out(FUSE, &format!("opening {FUSE_DEVICE}"), limit),
    }
}

pub fn judge_fuse(result: Result<(), String>) -> Check {
    match result {
        Ok(()) => Check::ok(FUSE, format!("{FUSE_DEVICE} opens for reading and writing")),
        Err(e) => Check::fail(
            FUSE,
            e,
            "load the module (modprobe fuse; add fuse to /etc/modules-load.d/), and in a pod \
             run privileged with the host's /dev mounted",
        ),
    }
}

/// The node's readiness check on mount.glusterfs.
pub async fn mount_helper(limit: Duration) -> Check {
    match blocking(limit, || {
        mounting::mount_helper_present(Path::new(MOUNT_HELPER))
    })
    .await
    {
        Ok(Ok(())) => Check::ok(MOUNT_GLUSTERFS, format!("{MOUNT_HELPER} is there")),
        Ok(Err(e)) => Check::fail(
            MOUNT_GLUSTERFS,
            e,
            "apt install glusterfs-client (the driver's image has it: run doctor from the image)",
        ),
        Err(_) => Check::timed_out(
            MOUNT_GLUSTERFS,
            &format!("looking at {MOUNT_HELPER}"),
            limit,
        ),
    }
}

/// The kubelet directory and the mount it lies in, from this process's
/// mountinfo.
pub async fn kubelet_dir(dir: PathBuf, limit: Duration) -> Check {
    let shown = dir.clone();
    let read = blocking(limit, move || {
        let real = match std::fs::canonicalize(&dir) {
            Ok(real) => Some(real),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let mounts = mountinfo::parse(&std::fs::read_to_string("/proc/self/mountinfo")?);
        Ok((real, mounts))
    })
    .await;
    match read {
        Ok(Ok((real, mounts))) => judge_kubelet_dir(&shown, real.as_deref(), &mounts),
        Ok(Err(e)) => Check::fail(
            KUBELET_DIR,
            format!("cannot look at {}: {e}", shown.display()),
            "run doctor as root",
        ),
        Err(_) => Check::timed_out(
            KUBELET_DIR,
            &format!("looking at {}", shown.display()),
            limit,
        ),
    }
}

/// `real`: the directory without symbolic links, `None` if it is missing.
/// What the node plugin mounts beneath it reaches the kubelet and the pods
/// only if the mount it lies in is shared.
pub fn judge_kubelet_dir(dir: &Path, real: Option<&Path>, mounts: &[MountEntry]) -> Check {
    let shown = dir.display();
    let Some(real) = real else {
        return Check::fail(
            KUBELET_DIR,
            format!("{shown} does not exist"),
            "give the kubelet's --root-dir with --kubelet-dir (K3s and most distributions: \
             /var/lib/kubelet; k0s: /var/lib/k0s/kubelet; MicroK8s: \
             /var/snap/microk8s/common/var/lib/kubelet) and set the chart value kubeletDir to it",
        );
    };
    let Some(mount) = mountinfo::containing(mounts, real) else {
        return Check::fail(
            KUBELET_DIR,
            format!("no mount holds {} in /proc/self/mountinfo", real.display()),
            "run doctor on the node itself or in a pod as deploy/examples/doctor-job.yaml",
        );
    };
    let whose = if real == mount.mount_point {
        format!("{shown} is a mount")
    } else {
        format!(
            "{shown} lies in the mount at {}",
            mount.mount_point.display()
        )
    };
    let propagation = mount.propagation();
    if mount.is_shared() {
        return Check::ok(
            KUBELET_DIR,
            format!("{whose}, whose propagation is {propagation}"),
        );
    }
    let fix = if propagation.contains("slave") {
        // What a container sees of a shared host mount without Bidirectional.
        format!(
            "if this runs in a pod, mount {shown} with mountPropagation: Bidirectional (as \
             deploy/examples/doctor-job.yaml) or run doctor on the host; on the host: mount \
             --make-rshared {}",
            mount.mount_point.display()
        )
    } else {
        format!(
            "mount --make-rshared {} on the host, at every boot (systemd does it for /; \
             without systemd, a boot script), then restart the kubelet",
            mount.mount_point.display()
        )
    };
    Check::fail(
        KUBELET_DIR,
        format!(
            "{whose}, whose propagation is {propagation}: volumes the node plugin mounts \
             there would not reach the pods"
        ),
        fix,
    )
}

/// The kernel's clock discipline, from `adjtimex` (read-only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockState {
    /// adjtimex's return value: `TIME_ERROR` when not synchronised.
    pub state: i32,
    /// `STA_*` flags.
    pub status: i32,
    pub max_error_us: i64,
    pub est_error_us: i64,
}

pub async fn clock(limit: Duration) -> Check {
    match blocking(limit, read_clock).await {
        Ok(Ok(state)) => judge_clock(state),
        Ok(Err(e)) => Check::warn(CLOCK, format!("adjtimex failed: {e}"), None),
        Err(_) => Check::timed_out(CLOCK, "adjtimex", limit),
    }
}

fn read_clock() -> std::io::Result<ClockState> {
    // SAFETY: a zeroed timex with modes 0 only asks; the kernel fills it in.
    let mut timex: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a timex we own.
    let state = unsafe { libc::adjtimex(&mut timex) };
    if state < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(ClockState {
        state,
        status: timex.status,
        max_error_us: timex.maxerror,
        est_error_us: timex.esterror,
    })
}

/// glusterd offers no way to read another server's clock, so skew between
/// servers is not measured: only whether this node's clock is kept in time.
pub fn judge_clock(clock: ClockState) -> Check {
    let unmeasured = "skew to the other servers is not measured (glusterd offers no clock to \
                      compare): run doctor on every node";
    if clock.state == libc::TIME_ERROR || clock.status & libc::STA_UNSYNC != 0 {
        return Check::warn(
            CLOCK,
            format!(
                "the kernel's clock is not synchronised (adjtimex: STA_UNSYNC), so no NTP or \
                 PTP daemon keeps it in time; {unmeasured}"
            ),
            Some(
                "run chrony or systemd-timesyncd on every node: file times gluster stores \
                 (ctime) come from the clients' clocks, and TLS certificates are judged by \
                 them"
                    .into(),
            ),
        );
    }
    Check::ok(
        CLOCK,
        format!(
            "synchronised (estimated error {} us, at most {} us); {unmeasured}",
            clock.est_error_us, clock.max_error_us
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::super::Status;
    use super::*;

    fn report(own: bool, mount_point: &str, available_bytes: u64) -> BrickRootReport {
        BrickRootReport {
            exists: true,
            is_directory: true,
            own_file_system: own,
            file_system_mount_point: Some(mount_point.into()),
            file_system_type: "xfs".into(),
            file_system_source: "/dev/vdb".into(),
            total_bytes: 100 << 30,
            available_bytes,
        }
    }

    const GIB: u64 = 1 << 30;

    #[test]
    fn brick_roots_by_the_agents_rule() {
        let disk = judge_brick_root(
            "/data/glusterfs",
            &report(true, "/data/glusterfs", 50 * GIB),
            false,
            GIB,
        );
        assert_eq!(disk.status, Status::Ok, "{disk:?}");
        assert_eq!(disk.name, "brick root /data/glusterfs");
        assert!(
            disk.finding.contains("xfs /dev/vdb mounted here"),
            "{disk:?}"
        );
        assert!(
            disk.finding.contains("(53687091200 bytes) free"),
            "{disk:?}"
        );

        let plain = report(false, "/", 50 * GIB);
        let refused = judge_brick_root("/data/glusterfs", &plain, false, GIB);
        assert_eq!(refused.status, Status::Fail);
        assert!(
            refused.finding.contains("on the root file system"),
            "{refused:?}"
        );
        assert!(
            refused
                .fix
                .unwrap()
                .contains("--allow-root-filesystem-bricks")
        );
        let allowed = judge_brick_root("/data/glusterfs", &plain, true, GIB);
        assert_eq!(allowed.status, Status::Ok);
        assert!(
            allowed
                .finding
                .contains("(allowed: --allow-root-filesystem-bricks)")
        );

        let missing = judge_brick_root("/data/glusterfs", &BrickRootReport::default(), true, GIB);
        assert_eq!(missing.status, Status::Fail);
        assert_eq!(missing.finding, "does not exist");
        assert!(
            missing
                .fix
                .unwrap()
                .starts_with("mount the brick disk at /data/glusterfs")
        );
        let file = BrickRootReport {
            exists: true,
            ..Default::default()
        };
        assert_eq!(
            judge_brick_root("/x", &file, true, 0).finding,
            "is not a directory"
        );
    }

    #[test]
    fn free_space_below_the_threshold_fails() {
        let full = judge_brick_root("/b", &report(true, "/b", GIB - 1), false, GIB);
        assert_eq!(full.status, Status::Fail);
        assert!(
            full.finding
                .contains("only 1024.0 MiB (1073741823 bytes) free"),
            "{full:?}"
        );
        assert!(full.fix.unwrap().contains("--min-free-gib"));
        let enough = judge_brick_root("/b", &report(true, "/b", GIB), false, GIB);
        assert_eq!(enough.status, Status::Ok);
    }

    #[tokio::test]
    async fn inspects_brick_roots_here() {
        let limit = Duration::from_secs(10);
        let missing = brick_root("/nonexistent/bricks".into(), true, 0, limit).await;
        assert_eq!(missing.status, Status::Fail);
        let scratch = tempfile::tempdir().unwrap();
        let root = scratch.path().to_str().unwrap().to_string();
        let plain = brick_root(root.clone(), true, 0, limit).await;
        assert_eq!(plain.status, Status::Ok, "{plain:?}");
        let too_full = brick_root(root, true, u64::MAX, limit).await;
        assert_eq!(too_full.status, Status::Fail);
    }

    // Shapes of /proc/self/mountinfo: a host whose root is shared (systemd),
    // one whose root is private, a container with the kubelet directory
    // mounted HostToContainer (slave) and Bidirectional (shared).
    const SHARED_HOST: &str = "27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw";
    const PRIVATE_HOST: &str = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
40 27 254:16 / /var/lib/kubelet rw,relatime shared:20 - xfs /dev/vdb rw";
    const POD: &str = "900 850 0:90 / / rw,relatime - overlay overlay rw
901 900 254:0 /var/lib/kubelet /var/lib/kubelet rw,relatime master:1 - ext4 /dev/vda rw
902 900 254:0 /var/lib/kubelet /host/kubelet rw,relatime shared:1 - ext4 /dev/vda rw";

    fn kubelet(text: &str, real: &str) -> Check {
        judge_kubelet_dir(
            Path::new("/var/lib/kubelet"),
            Some(Path::new(real)),
            &mountinfo::parse(text),
        )
    }

    #[test]
    fn kubelet_dir_needs_a_shared_mount() {
        let shared = kubelet(SHARED_HOST, "/var/lib/kubelet");
        assert_eq!(shared.status, Status::Ok, "{shared:?}");
        assert_eq!(
            shared.finding,
            "/var/lib/kubelet lies in the mount at /, whose propagation is shared"
        );
        let own = kubelet(PRIVATE_HOST, "/var/lib/kubelet");
        assert_eq!(own.status, Status::Ok, "its own shared mount: {own:?}");
        let private = kubelet(PRIVATE_HOST, "/srv/kubelet");
        assert_eq!(private.status, Status::Fail);
        assert!(
            private.finding.contains("propagation is private"),
            "{private:?}"
        );
        assert!(
            private
                .fix
                .unwrap()
                .starts_with("mount --make-rshared / on the host"),
        );
        let slave = kubelet(POD, "/var/lib/kubelet");
        assert_eq!(slave.status, Status::Fail);
        assert!(slave.fix.unwrap().contains("Bidirectional"));
        assert_eq!(kubelet(POD, "/host/kubelet/pods").status, Status::Ok);
        let missing = judge_kubelet_dir(Path::new("/var/lib/kubelet"), None, &[]);
        assert_eq!(missing.status, Status::Fail);
        assert!(missing.fix.unwrap().contains("--kubelet-dir"));
    }

    #[test]
    fn clock_discipline() {
        let synced = judge_clock(ClockState {
            state: libc::TIME_OK,
            status: 0x2001, // STA_PLL | STA_NANO
            max_error_us: 12_000,
            est_error_us: 150,
        });
        assert_eq!(synced.status, Status::Ok);
        assert!(
            synced.finding.contains("estimated error 150 us"),
            "{synced:?}"
        );
        assert!(synced.finding.contains("not measured"));
        // What this machine (no NTP daemon) reports.
        let free_running = judge_clock(ClockState {
            state: libc::TIME_ERROR,
            status: libc::STA_UNSYNC,
            max_error_us: 16_000_000,
            est_error_us: 16_000_000,
        });
        assert_eq!(free_running.status, Status::Warn);
        assert!(free_running.fix.unwrap().contains("chrony"));
        let flagged = judge_clock(ClockState {
            state: libc::TIME_OK,
            status: libc::STA_UNSYNC,
            max_error_us: 0,
            est_error_us: 0,
        });
        assert_eq!(flagged.status, Status::Warn);
        assert!(read_clock().is_ok());
    }

    #[test]
    fn fuse_and_mount_helper_findings() {
        assert_eq!(judge_fuse(Ok(())).status, Status::Ok);
        let broken = judge_fuse(Err("/dev/fuse is not usable: No such file".into()));
        assert_eq!(broken.status, Status::Fail);
        assert!(broken.fix.unwrap().contains("modprobe fuse"));
    }
}

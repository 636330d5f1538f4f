//! What a brick root is on this server, read from the kernel's mountinfo:
//! whether it exists, and whether a file system of its own is mounted there.
//!
//! "Of its own" means mountinfo lists a mount exactly at the root whose own
//! root is `/`: the top of a file system, not a directory of a larger one.
//! A bind mount of a directory is a mount point too, which is why being a
//! mount point is not enough: in the node plugin's container every brick
//! root is a bind mount (a hostPath volume), and its mountinfo root tells
//! whether the host has a disk mounted there (`/`) or only a directory of
//! its root file system (`/data/glusterfs`).

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use crate::controller::BrickRootReport;
use crate::mount::MountEntry;
use crate::mount::mountinfo;

/// Inspects `path` in this process's mount namespace.
pub fn inspect(path: &Path) -> io::Result<BrickRootReport> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BrickRootReport::default()),
        Err(e) => return Err(e),
    };
    // mountinfo spells paths without symlinks.
    let real = std::fs::canonicalize(path)?;
    let device = format!("{}:{}", libc::major(meta.dev()), libc::minor(meta.dev()));
    let mounts = mountinfo::parse(&std::fs::read_to_string("/proc/self/mountinfo")?);
    let place = place(&real, &device, &mounts);
    let (total_bytes, available_bytes) = if meta.is_dir() {
        let stats = nix::sys::statvfs::statvfs(&real).map_err(io::Error::from)?;
        let block = stats.fragment_size();
        (
            stats.blocks().saturating_mul(block),
            stats.blocks_available().saturating_mul(block),
        )
    } else {
        (0, 0)
    };
    Ok(BrickRootReport {
        exists: true,
        is_directory: meta.is_dir(),
        own_file_system: place.own_file_system,
        file_system_mount_point: place
            .file_system_mount_point
            .map(|p| p.to_string_lossy().into_owned()),
        file_system_type: place.file_system_type,
        file_system_source: place.file_system_source,
        total_bytes,
        available_bytes,
    })
}

/// Whether `path` is a mount point in this process's mount namespace (any
/// mount, a bind mount of a directory included).
pub fn is_mount_point(path: &Path) -> io::Result<bool> {
    let real = std::fs::canonicalize(path)?;
    let mounts = mountinfo::parse(&std::fs::read_to_string("/proc/self/mountinfo")?);
    Ok(mounts.iter().any(|m| m.mount_point == real))
}

/// Where a path sits among the mounts.
#[derive(Debug, PartialEq, Eq)]
pub struct Place {
    pub own_file_system: bool,
    /// Where the file system holding the path is mounted, as far as can be
    /// told (through a bind mount: where the bound directory's file system
    /// is mounted, if the bind keeps the directory's path, as hostPath
    /// volumes do).
    pub file_system_mount_point: Option<PathBuf>,
    pub file_system_type: String,
    pub file_system_source: String,
}

/// Places `path` (canonical; `device` is its `major:minor`) among `mounts`
/// (in mountinfo order: a later mount at the same point covers an earlier).
pub fn place(path: &Path, device: &str, mounts: &[MountEntry]) -> Place {
    let at_path: Vec<&MountEntry> = mounts.iter().filter(|m| m.mount_point == path).collect();
    let (mount, own) = match topmost(&at_path, device) {
        Some(mount) => (Some(mount), mount.root == Path::new("/")),
        None => {
            let deepest = mounts
                .iter()
                .filter(|m| path.starts_with(&m.mount_point))
                .map(|m| m.mount_point.components().count())
                .max();
            let containing: Vec<&MountEntry> = mounts
                .iter()
                .filter(|m| {
                    path.starts_with(&m.mount_point)
                        && Some(m.mount_point.components().count()) == deepest
                })
                .collect();
            (topmost(&containing, device), false)
        }
    };
    let Some(mount) = mount else {
        return Place {
            own_file_system: false,
            file_system_mount_point: None,
            file_system_type: String::new(),
            file_system_source: String::new(),
        };
    };
    Place {
        own_file_system: own,
        file_system_mount_point: file_system_mount_point(&mount.mount_point, &mount.root),
        file_system_type: mount.fs_type.clone(),
        file_system_source: mount.source.clone(),
    }
}

/// The last of `candidates` showing `device`, else the last one.
fn topmost<'a>(candidates: &[&'a MountEntry], device: &str) -> Option<&'a MountEntry> {
    candidates
        .iter()
        .rev()
        .find(|m| m.device == device)
        .or(candidates.last())
        .copied()
}

/// Where the file system is mounted that shows its directory `root` at
/// `mount_point`: `mount_point` itself for its top (`/`), else
/// `mount_point` without `root`'s components when it ends in them.
fn file_system_mount_point(mount_point: &Path, root: &Path) -> Option<PathBuf> {
    let inner: Vec<Component> = root
        .components()
        .filter(|c| !matches!(c, Component::RootDir))
        .collect();
    let outer: Vec<Component> = mount_point.components().collect();
    if inner.len() >= outer.len() || !outer.ends_with(&inner) {
        return None;
    }
    Some(outer[..outer.len() - inner.len()].iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured shapes: a host's root and a disk at /data/glusterfs; the same
    // root seen from a container (overlay root, hostPath bind mounts of a
    // directory of the host's root file system and of a disk's top); a disk
    // mounted on the host after the container started (HostToContainer).
    const HOST: &str = "\
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
40 27 254:16 / /data/glusterfs rw,relatime shared:20 - xfs /dev/vdb rw
41 27 0:50 / /srv/tmp rw - tmpfs tmpfs rw
42 27 254:0 /srv/plain /mnt/bound rw - ext4 /dev/vda rw";
    const POD: &str = "\
900 850 0:90 / / rw,relatime - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w
901 900 254:0 /data/glusterfs /data/glusterfs rw,relatime - ext4 /dev/vda rw
902 900 254:16 / /mnt/ssd/glusterfs rw,relatime - xfs /dev/vdb rw
903 900 254:32 /glusterfs /srv/bricks/glusterfs rw,relatime - xfs /dev/vdc rw
904 901 254:48 / /data/glusterfs rw,relatime - xfs /dev/vdd rw";

    fn at(text: &str, path: &str, device: &str) -> Place {
        place(Path::new(path), device, &mountinfo::parse(text))
    }

    #[test]
    fn on_a_host() {
        let disk = at(HOST, "/data/glusterfs", "254:16");
        assert!(disk.own_file_system);
        assert_eq!(disk.file_system_mount_point, Some("/data/glusterfs".into()));
        assert_eq!(disk.file_system_type, "xfs");
        let plain = at(HOST, "/srv/glusterfs", "254:0");
        assert!(!plain.own_file_system);
        assert_eq!(plain.file_system_mount_point, Some("/".into()));
        assert_eq!(plain.file_system_source, "/dev/vda");
        let below_tmpfs = at(HOST, "/srv/tmp/b", "0:50");
        assert!(!below_tmpfs.own_file_system);
        assert_eq!(below_tmpfs.file_system_mount_point, Some("/srv/tmp".into()));
        let tmpfs = at(HOST, "/srv/tmp", "0:50");
        assert!(tmpfs.own_file_system);
    }

    #[test]
    fn a_bind_mounted_directory_is_a_mount_point_but_not_its_own_file_system() {
        let bound = at(HOST, "/mnt/bound", "254:0");
        assert!(!bound.own_file_system);
        // /srv/plain shown at /mnt/bound: where its file system is mounted cannot be told.
        assert_eq!(bound.file_system_mount_point, None);
        assert!(is_mount_point(Path::new("/proc")).unwrap());
        assert!(!is_mount_point(Path::new("/proc/self")).unwrap());
    }

    #[test]
    fn in_the_node_plugin_container() {
        // hostPath of a plain directory of the host's root file system.
        let plain = at(POD, "/data/glusterfs", "254:0");
        assert!(!plain.own_file_system);
        assert_eq!(plain.file_system_mount_point, Some("/".into()));
        assert_eq!(plain.file_system_source, "/dev/vda");
        // hostPath of a disk mounted there on the host.
        let disk = at(POD, "/mnt/ssd/glusterfs", "254:16");
        assert!(disk.own_file_system);
        // hostPath of a directory of a disk mounted at /srv/bricks on the host.
        let inside = at(POD, "/srv/bricks/glusterfs", "254:32");
        assert!(!inside.own_file_system);
        assert_eq!(inside.file_system_mount_point, Some("/srv/bricks".into()));
        // Not mounted into the container: the image's own directory.
        let image = at(POD, "/opt/bricks", "0:90");
        assert!(!image.own_file_system);
        assert_eq!(image.file_system_mount_point, Some("/".into()));
        assert_eq!(image.file_system_type, "overlay");
    }

    #[test]
    fn a_disk_mounted_after_the_container_started_covers_the_directory() {
        let covered = at(POD, "/data/glusterfs", "254:48");
        assert!(covered.own_file_system);
        assert_eq!(covered.file_system_source, "/dev/vdd");
    }

    #[test]
    fn mount_points_of_binds() {
        let p = |s: &str| PathBuf::from(s);
        assert_eq!(
            file_system_mount_point(&p("/data/glusterfs"), &p("/data/glusterfs")),
            Some(p("/"))
        );
        assert_eq!(
            file_system_mount_point(&p("/data/glusterfs"), &p("/glusterfs")),
            Some(p("/data"))
        );
        assert_eq!(file_system_mount_point(&p("/x"), &p("/")), Some(p("/x")));
        assert_eq!(
            file_system_mount_point(&p("/data/glusterfs"), &p("/@/data/glusterfs")),
            None
        );
        assert_eq!(file_system_mount_point(&p("/a/b"), &p("/c")), None);
    }

    #[test]
    fn inspects_this_machine() {
        let missing = inspect(Path::new("/nonexistent/brick-root")).unwrap();
        assert!(!missing.exists);
        let proc = inspect(Path::new("/proc")).unwrap();
        assert!(proc.exists && proc.is_directory && proc.own_file_system);
        assert_eq!(proc.file_system_type, "proc");
        let file = inspect(Path::new("/proc/self/status")).unwrap();
        assert!(file.exists && !file.is_directory);
        let scratch = tempfile::tempdir().unwrap();
        let plain = inspect(scratch.path()).unwrap();
        assert!(plain.is_directory && !plain.own_file_system);
        assert!(plain.total_bytes > 0);
    }
}

//! `/proc/self/mountinfo`, the kernel's own record of what is mounted.

use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountEntry {
    /// The mount's id, unique on the system while it exists.
    pub id: u64,
    /// Id of the mount this one is mounted on.
    pub parent: u64,
    /// `major:minor` of the mounted file system; a bind mount shares it
    /// with its source.
    pub device: String,
    /// Directory of the file system shown at the mount point (`/` unless a
    /// subdirectory was bind-mounted).
    pub root: PathBuf,
    pub mount_point: PathBuf,
    /// Per-mount options (`ro`/`rw`, ...).
    pub mount_options: Vec<String>,
    /// The optional fields: propagation (`shared:N`, `master:N`,
    /// `propagate_from:N`, `unbindable`); none for a private mount.
    pub optional_fields: Vec<String>,
    pub fs_type: String,
    /// e.g. `server:/volume` for a gluster FUSE mount.
    pub source: String,
}

impl MountEntry {
    pub fn is_read_only(&self) -> bool {
        self.mount_options.iter().any(|o| o == "ro")
    }

    /// Mounts and unmounts below it propagate to its peers (`shared:N`),
    /// as they must for the kubelet's directory.
    pub fn is_shared(&self) -> bool {
        self.optional_fields
            .iter()
            .any(|f| f.starts_with("shared:"))
    }

    /// How mounts propagate, as findmnt says it: `shared`, `slave`,
    /// `shared,slave`, `private` or `unbindable`.
    pub fn propagation(&self) -> String {
        let has = |prefix: &str| self.optional_fields.iter().any(|f| f.starts_with(prefix));
        match (has("shared:"), has("master:"), has("unbindable")) {
            (true, true, _) => "shared,slave",
            (true, false, _) => "shared",
            (false, true, _) => "slave",
            (false, false, true) => "unbindable",
            (false, false, false) => "private",
        }
        .to_string()
    }

    pub fn is_glusterfs(&self) -> bool {
        self.fs_type == "fuse.glusterfs"
    }

    /// The volume of a gluster FUSE mount (`host:/volume` or `host:volume`).
    pub fn gluster_volume(&self) -> Option<&str> {
        if !self.is_glusterfs() {
            return None;
        }
        let (_, volume) = self.source.split_once(':')?;
        Some(volume.trim_start_matches('/'))
    }

    /// What of gluster this mount shows: its volume (or `<volume>/<dir>`
    /// for a subdirectory mount) followed by the mount's root. The same
    /// `pool/dir` for a `server:/pool/dir` mount, a bind of it, and a bind
    /// of `dir` from a mount of the whole pool.
    pub fn gluster_path(&self) -> Option<String> {
        let volume = self.gluster_volume()?.trim_end_matches('/');
        let root = self.root.to_str()?.trim_matches('/');
        Some(if root.is_empty() {
            volume.to_string()
        } else {
            format!("{volume}/{root}")
        })
    }
}

/// Parses mountinfo text; malformed lines are skipped.
pub fn parse(text: &str) -> Vec<MountEntry> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<MountEntry> {
    // id parent major:minor root mount-point options [optional...] - type source super-options
    let (before, after) = line.split_once(" - ")?;
    let fields: Vec<&str> = before.split(' ').collect();
    let tail: Vec<&str> = after.split(' ').collect();
    if fields.len() < 6 || tail.len() < 2 {
        return None;
    }
    Some(MountEntry {
        id: fields[0].parse().ok()?,
        parent: fields[1].parse().ok()?,
        device: fields[2].to_string(),
        root: PathBuf::from(unescape(fields[3])),
        mount_point: PathBuf::from(unescape(fields[4])),
        mount_options: fields[5].split(',').map(str::to_string).collect(),
        optional_fields: fields[6..].iter().map(|f| f.to_string()).collect(),
        fs_type: tail[0].to_string(),
        source: unescape(tail[1]),
    })
}

/// The mount `path` (absolute, without symbolic links) lies in: the one at
/// the longest mount point above or at it, the last of several there (a
/// later mount covers an earlier one).
pub fn containing<'a>(mounts: &'a [MountEntry], path: &Path) -> Option<&'a MountEntry> {
    let deepest = mounts
        .iter()
        .filter(|m| path.starts_with(&m.mount_point))
        .map(|m| m.mount_point.components().count())
        .max()?;
    mounts
        .iter()
        .rev()
        .find(|m| path.starts_with(&m.mount_point) && m.mount_point.components().count() == deepest)
}

/// The kernel writes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).filter(|d| {
            bytes[i] == b'\\' && d[0] <= b'3' && d.iter().all(|b| (b'0'..=b'7').contains(b))
        });
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured on this machine: a gluster FUSE mount, a read-only bind mount
    // of it, and an ordinary bind mount of a directory with a space.
    const SAMPLE: &str = "42 27 0:39 / /tmp/tb/m/stage rw,relatime - fuse.glusterfs 127.77.1.1:/v1 rw,user_id=0,group_id=0,default_permissions,allow_other,max_read=131072
43 27 0:39 / /tmp/tb/m/target ro,relatime - fuse.glusterfs 127.77.1.1:/v1 rw,user_id=0,group_id=0,default_permissions,allow_other,max_read=131072
50 27 254:0 /srv/a\\040b /mnt/a\\040b rw,relatime shared:1 - ext4 /dev/vda rw
garbage line";

    #[test]
    fn parses_fuse_and_bind_mounts() {
        let entries = parse(SAMPLE);
        assert_eq!(entries.len(), 3);
        let stage = &entries[0];
        assert_eq!((stage.id, stage.parent), (42, 27));
        assert_eq!(stage.mount_point, PathBuf::from("/tmp/tb/m/stage"));
        assert_eq!(stage.gluster_volume(), Some("v1"));
        assert!(!stage.is_read_only());
        let target = &entries[1];
        assert_eq!(target.device, stage.device);
        assert!(target.is_read_only());
        let plain = &entries[2];
        assert_eq!(plain.mount_point, PathBuf::from("/mnt/a b"));
        assert_eq!(plain.root, PathBuf::from("/srv/a b"));
        assert_eq!(plain.gluster_volume(), None);
        assert_eq!(plain.gluster_path(), None);
        assert_eq!(stage.gluster_path().as_deref(), Some("v1"));
    }

    #[test]
    fn gluster_paths_of_directory_mounts_and_binds() {
        let text = "\
70 27 0:60 / /p/pool.1 rw - fuse.glusterfs 127.77.1.1:/pool rw
71 27 0:60 /csi-a /k/staging-a rw - fuse.glusterfs 127.77.1.1:/pool rw
72 27 0:60 /csi-a/sub /k/pod-a/sub ro - fuse.glusterfs 127.77.1.1:/pool rw
73 27 0:61 / /k/staging-b rw - fuse.glusterfs 127.77.1.1:/pool/csi-b rw";
        let paths: Vec<Option<String>> = parse(text).iter().map(MountEntry::gluster_path).collect();
        assert_eq!(
            paths,
            [
                Some("pool".to_string()),
                Some("pool/csi-a".to_string()),
                Some("pool/csi-a/sub".to_string()),
                Some("pool/csi-b".to_string()),
            ]
        );
    }

    #[test]
    fn propagation_and_the_containing_mount() {
        let text = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
60 27 254:0 /var/lib/kubelet /var/lib/kubelet rw shared:5 master:1 - ext4 /dev/vda rw
61 60 0:40 / /var/lib/kubelet/pods/x rw shared:9 - tmpfs tmpfs rw
62 27 0:41 / /mnt rw master:3 - tmpfs tmpfs rw
63 62 0:42 / /mnt rw unbindable - tmpfs tmpfs rw";
        let mounts = parse(text);
        let at = |p: &str| containing(&mounts, Path::new(p)).map(|m| m.id);
        assert_eq!(at("/var/lib/kubelet"), Some(60));
        assert_eq!(at("/var/lib/kubelet/plugins"), Some(60));
        assert_eq!(at("/var/lib/kubeletx"), Some(27), "components, not text");
        assert_eq!(at("/var/lib/kubelet/pods/x/y"), Some(61));
        assert_eq!(at("/mnt/a"), Some(63), "the later mount covers");
        assert_eq!(containing(&[], Path::new("/")), None);
        let propagation: Vec<(u64, bool, String)> = mounts
            .iter()
            .map(|m| (m.id, m.is_shared(), m.propagation()))
            .collect();
        assert_eq!(
            propagation,
            [
                (27, false, "private".to_string()),
                (60, true, "shared,slave".to_string()),
                (61, true, "shared".to_string()),
                (62, false, "slave".to_string()),
                (63, false, "unbindable".to_string()),
            ]
        );
    }

    #[test]
    fn unescape_leaves_other_backslashes() {
        assert_eq!(unescape("a\\040b\\134c"), "a b\\c");
        assert_eq!(unescape("a\\x"), "a\\x");
        assert_eq!(unescape("end\\04"), "end\\04");
    }
}

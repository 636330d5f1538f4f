//! The CSI `volume_context`: everything a node needs to mount a volume,
//! written by the controller and read by the node (or written by hand in a
//! static PersistentVolume's `volumeAttributes`).

use std::collections::HashMap;

use crate::names::{is_gluster_volume_name, is_host_name, is_subdirectory_name};

pub const KEY_VOLUME: &str = "volume";
pub const KEY_SERVER: &str = "server";
pub const KEY_BACKUP_SERVERS: &str = "backupServers";
pub const KEY_MOUNT_OPTIONS: &str = "mountOptions";
/// Subdirectory mode: `shared` (one mount of the pool per node, each
/// volume a bind of its directory) or `perVolume` (the default).
pub const KEY_POOL_MOUNT: &str = "poolMount";
pub const POOL_MOUNT_SHARED: &str = "shared";
pub const POOL_MOUNT_PER_VOLUME: &str = "perVolume";

/// Longest volume id (a static PV's `volumeHandle`) the node accepts.
pub const MAX_VOLUME_ID: usize = 256;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeContext {
    /// Gluster volume to mount, or `<volume>/<directory>` for one directory
    /// at its top (subdirectory mode, or a static PV).
    pub volume: String,
    /// Server asked first for the volume file.
    pub server: String,
    /// Further servers for `backup-volfile-servers`; never repeats `server`.
    pub backup_servers: Vec<String>,
    /// Extra FUSE mount options, validated by the node before use.
    pub mount_options: Vec<String>,
    /// The node mounts the pool once and binds this volume's directory
    /// from it (only for `<pool>/<directory>`).
    pub shared_pool_mount: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("volume_context.{key}: {reason}")]
pub struct ContextError {
    pub key: &'static str,
    pub reason: String,
}

impl VolumeContext {
    /// Builds a context from the servers holding a volume's bricks, in order;
    /// duplicates are dropped so the primary is never repeated.
    pub fn new(volume: &str, servers: &[String], mount_options: Vec<String>) -> Option<Self> {
        let mut unique: Vec<String> = Vec::new();
        for server in servers {
            if !unique.contains(server) {
                unique.push(server.clone());
            }
        }
        let mut servers = unique.into_iter();
        Some(VolumeContext {
            volume: volume.to_string(),
            server: servers.next()?,
            backup_servers: servers.collect(),
            mount_options,
            shared_pool_mount: false,
        })
    }

    /// The same context, asking nodes to share one mount of the pool.
    pub fn with_shared_pool_mount(mut self, shared: bool) -> Self {
        self.shared_pool_mount = shared;
        self
    }

    /// `(pool, directory)` of a subdirectory volume.
    pub fn directory(&self) -> Option<(&str, &str)> {
        self.volume.split_once('/')
    }

    /// The gluster volume itself, without the directory of a subdirectory mount.
    pub fn gluster_volume(&self) -> &str {
        gluster_volume_of(&self.volume)
    }

    /// Primary first, then the backups.
    pub fn servers(&self) -> Vec<String> {
        std::iter::once(self.server.clone())
            .chain(self.backup_servers.iter().cloned())
            .collect()
    }

    pub fn to_map(&self) -> HashMap<String, String> {
        let mut map = HashMap::from([
            (KEY_VOLUME.to_string(), self.volume.clone()),
            (KEY_SERVER.to_string(), self.server.clone()),
        ]);
        if !self.backup_servers.is_empty() {
            map.insert(KEY_BACKUP_SERVERS.into(), self.backup_servers.join(","));
        }
        if !self.mount_options.is_empty() {
            map.insert(KEY_MOUNT_OPTIONS.into(), self.mount_options.join(","));
        }
        if self.shared_pool_mount {
            map.insert(KEY_POOL_MOUNT.into(), POOL_MOUNT_SHARED.into());
        }
        map
    }

    /// Reads and validates a context. Unknown keys are ignored: the CO adds
    /// its own (`csi.storage.k8s.io/...`) to NodePublish contexts.
    pub fn from_map(map: &HashMap<String, String>) -> Result<Self, ContextError> {
        let volume = required(map, KEY_VOLUME)?;
        check_volume(volume)?;
        let server = required(map, KEY_SERVER)?;
        check_host(KEY_SERVER, server)?;
        let mut backup_servers = Vec::new();
        for backup in list(map, KEY_BACKUP_SERVERS) {
            check_host(KEY_BACKUP_SERVERS, backup)?;
            if backup == server || backup_servers.iter().any(|b| b == backup) {
                return Err(ContextError {
                    key: KEY_BACKUP_SERVERS,
                    reason: format!(
                        "{backup:?} is listed twice (gluster refuses repeated servers)"
                    ),
                });
            }
            backup_servers.push(backup.to_string());
        }
        let mount_options = list(map, KEY_MOUNT_OPTIONS).map(str::to_string).collect();
        let shared_pool_mount = match map.get(KEY_POOL_MOUNT).map(|v| v.trim()) {
            None | Some("") | Some(POOL_MOUNT_PER_VOLUME) => false,
            Some(POOL_MOUNT_SHARED) if volume.contains('/') => true,
            Some(POOL_MOUNT_SHARED) => {
                return Err(ContextError {
                    key: KEY_POOL_MOUNT,
                    reason: format!(
                        "{POOL_MOUNT_SHARED:?} needs a volume that is a directory of a pool \
                         (<pool>/<directory>); {volume:?} is a whole gluster volume"
                    ),
                });
            }
            Some(other) => {
                return Err(ContextError {
                    key: KEY_POOL_MOUNT,
                    reason: format!(
                        "{other:?} is not {POOL_MOUNT_SHARED:?} or {POOL_MOUNT_PER_VOLUME:?}"
                    ),
                });
            }
        };
        Ok(VolumeContext {
            volume: volume.to_string(),
            server: server.to_string(),
            backup_servers,
            mount_options,
            shared_pool_mount,
        })
    }
}

/// `<volume>` or `<volume>/<directory>`: what follows `server:/` in a mount.
fn check_volume(value: &str) -> Result<(), ContextError> {
    let (volume, directory) = match value.split_once('/') {
        Some((volume, directory)) => (volume, Some(directory)),
        None => (value, None),
    };
    if !is_gluster_volume_name(volume) {
        return Err(ContextError {
            key: KEY_VOLUME,
            reason: format!("{volume:?} is not a valid gluster volume name"),
        });
    }
    match directory {
        Some(directory) if !is_subdirectory_name(directory) => Err(ContextError {
            key: KEY_VOLUME,
            reason: format!(
                "{directory:?} is not a directory name a volume can be mounted at (one path \
                 component of letters, digits, '-', '_' and '.', not starting with '.' or '-')"
            ),
        }),
        _ => Ok(()),
    }
}

/// The gluster volume of a mount's `<volume>[/<directory>]`.
pub fn gluster_volume_of(volume: &str) -> &str {
    volume.split_once('/').map_or(volume, |(volume, _)| volume)
}

fn required<'a>(
    map: &'a HashMap<String, String>,
    key: &'static str,
) -> Result<&'a str, ContextError> {
    match map.get(key).map(|v| v.trim()) {
        Some(value) if !value.is_empty() => Ok(value),
        _ => Err(ContextError {
            key,
            reason: "missing (the volume must come from this driver's CreateVolume, or a static \
                     PV must set it)"
                .into(),
        }),
    }
}

fn list<'a>(map: &'a HashMap<String, String>, key: &str) -> impl Iterator<Item = &'a str> {
    map.get(key)
        .map(|v| v.as_str())
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn check_host(key: &'static str, host: &str) -> Result<(), ContextError> {
    if is_host_name(host) {
        Ok(())
    } else {
        Err(ContextError {
            key,
            reason: format!("{host:?} is not a host name or IPv4 address"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn servers(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn round_trip_and_no_repeated_primary() {
        let ctx = VolumeContext::new("csi-pvc-1", &servers(&["a", "b", "a", "c"]), vec![]).unwrap();
        assert_eq!(ctx.server, "a");
        assert_eq!(ctx.backup_servers, ["b", "c"]);
        assert_eq!(VolumeContext::from_map(&ctx.to_map()).unwrap(), ctx);
        assert!(VolumeContext::new("v", &[], vec![]).is_none());
    }

    #[test]
    fn rejects_bad_values_naming_the_key() {
        let base = VolumeContext::new("gv0", &servers(&["a", "b"]), vec![])
            .unwrap()
            .to_map();
        let cases = [
            (KEY_VOLUME, "-x", "volume"),
            (KEY_VOLUME, "", "volume"),
            (KEY_SERVER, "a;reboot", "server"),
            (KEY_BACKUP_SERVERS, "b,a", "backupServers"),
            (KEY_BACKUP_SERVERS, "b,b", "backupServers"),
            (KEY_BACKUP_SERVERS, "b:c", "backupServers"),
        ];
        for (key, value, named) in cases {
            let mut map = base.clone();
            map.insert(key.to_string(), value.to_string());
            let err = VolumeContext::from_map(&map).unwrap_err();
            assert_eq!(err.key, named, "{key}={value}");
            assert!(
                err.to_string()
                    .starts_with(&format!("volume_context.{named}"))
            );
        }
        for bad in ["gv0/", "gv0/a/b", "gv0/..", "gv0/.x", "/gv0", "gv0/a b"] {
            let mut map = base.clone();
            map.insert(KEY_VOLUME.to_string(), bad.to_string());
            assert_eq!(
                VolumeContext::from_map(&map).unwrap_err().key,
                "volume",
                "{bad:?}"
            );
        }
        let mut subdirectory = base.clone();
        subdirectory.insert(KEY_VOLUME.to_string(), "pool/csi-pvc-1".to_string());
        let ctx = VolumeContext::from_map(&subdirectory).unwrap();
        assert_eq!(ctx.gluster_volume(), "pool");
        let mut shared = subdirectory.clone();
        shared.insert(KEY_POOL_MOUNT.to_string(), "shared".to_string());
        let ctx = VolumeContext::from_map(&shared).unwrap();
        assert!(ctx.shared_pool_mount);
        assert_eq!(ctx.directory(), Some(("pool", "csi-pvc-1")));
        assert_eq!(VolumeContext::from_map(&ctx.to_map()).unwrap(), ctx);
        for (volume, mode) in [
            ("gv0", "shared"),
            ("pool/csi-pvc-1", "Shared"),
            ("pool/d", "x"),
        ] {
            let mut map = base.clone();
            map.insert(KEY_VOLUME.to_string(), volume.to_string());
            map.insert(KEY_POOL_MOUNT.to_string(), mode.to_string());
            let err = VolumeContext::from_map(&map).unwrap_err();
            assert_eq!(err.key, "poolMount", "{volume} {mode}");
        }
        let mut per_volume = subdirectory.clone();
        per_volume.insert(KEY_POOL_MOUNT.to_string(), "perVolume".to_string());
        assert!(
            !VolumeContext::from_map(&per_volume)
                .unwrap()
                .shared_pool_mount
        );
        let mut missing = base.clone();
        missing.remove(KEY_SERVER);
        assert_eq!(VolumeContext::from_map(&missing).unwrap_err().key, "server");
    }
}

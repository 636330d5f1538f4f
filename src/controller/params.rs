//! StorageClass parameters (CreateVolume `parameters`).

use std::collections::{BTreeSet, HashMap};

use super::zones::ZoneRule;
use crate::names::is_host_name;
use crate::ownership::RESERVED_PREFIX;

pub const REPLICA: &str = "replica";
pub const ARBITER: &str = "arbiter";
pub const BRICK_ROOT: &str = "brickRoot";
pub const SERVERS: &str = "servers";
pub const VOLUME_OPTIONS: &str = "volumeOptions";
pub const ALLOW_ROOT_FILESYSTEM_BRICKS: &str = "allowRootFilesystemBricks";
pub const ENFORCE_CAPACITY: &str = "enforceCapacity";
pub const ZONES: &str = "zones";
pub const POOL: &str = "pool";
pub const DIRECTORY_OWNER: &str = "directoryOwner";
pub const POOL_MOUNT: &str = "poolMount";
/// Keys the external-provisioner adds or interprets itself.
const CO_PREFIX: &str = "csi.storage.k8s.io/";
const KNOWN: [&str; 11] = [
    REPLICA,
    ARBITER,
    BRICK_ROOT,
    SERVERS,
    VOLUME_OPTIONS,
    ALLOW_ROOT_FILESYSTEM_BRICKS,
    ENFORCE_CAPACITY,
    ZONES,
    POOL,
    DIRECTORY_OWNER,
    POOL_MOUNT,
];

pub const DEFAULT_REPLICA: u32 = 3;
pub const MAX_REPLICA: u32 = 16;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageClassParams {
    pub replica: u32,
    /// `replica 3 arbiter 1`: the third brick holds metadata only.
    pub arbiter: bool,
    /// Absolute directory on every server under which brick directories are
    /// made; `None` means the controller's default.
    pub brick_root: Option<String>,
    /// Servers placement may use; `None` means any connected peer.
    pub servers: Option<Vec<String>>,
    /// Applied with `volume set` after create, in order.
    pub volume_options: Vec<(String, String)>,
    /// Whether brick roots may be plain directories (of the root file
    /// system, say) instead of file systems of their own; `None` means the
    /// controller's `--allow-root-filesystem-bricks`.
    pub allow_root_filesystem_bricks: Option<bool>,
    /// The requested size is a gluster quota hard limit on the volume;
    /// `false` records it only; `None` leaves it to the controller, which
    /// enforces on pools of glusterfs 10.x (see `Provisioner::enforces`).
    pub enforce_capacity: Option<bool>,
    /// How bricks spread over the servers' zones (`--server-zone`).
    pub zones: ZoneRule,
    /// Subdirectory mode: each volume is a directory of this gluster volume
    /// (made on first use with the parameters above, or the operator's).
    pub pool: Option<String>,
    /// Subdirectory mode: `uid:gid` given to a new volume's directory (for
    /// pods that do not run as root); `None`: root, mode 0755.
    pub directory_owner: Option<(u32, u32)>,
    /// Subdirectory mode, `poolMount: shared`: nodes mount the pool once
    /// and bind each volume's directory from that mount.
    pub shared_pool_mount: bool,
}

/// A bad parameter, named as the StorageClass spells it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("parameters.{key}: {reason}")]
pub struct ParamError {
    pub key: String,
    pub reason: String,
}

fn err(key: &str, reason: impl Into<String>) -> ParamError {
    ParamError {
        key: key.to_string(),
        reason: reason.into(),
    }
}

impl StorageClassParams {
    pub fn parse(params: &HashMap<String, String>) -> Result<Self, ParamError> {
        let mut keys: Vec<&String> = params.keys().collect();
        keys.sort();
        for key in keys {
            if !KNOWN.contains(&key.as_str()) && !key.starts_with(CO_PREFIX) {
                return Err(err(
                    key,
                    format!("unknown parameter (known: {})", KNOWN.join(", ")),
                ));
            }
        }
        let get = |key: &str| params.get(key).map(|v| v.trim());

        let arbiter = parse_bool(ARBITER, get(ARBITER))?.unwrap_or(false);
        let allow_root_filesystem_bricks = parse_bool(
            ALLOW_ROOT_FILESYSTEM_BRICKS,
            get(ALLOW_ROOT_FILESYSTEM_BRICKS),
        )?;
        let enforce_capacity = parse_bool(ENFORCE_CAPACITY, get(ENFORCE_CAPACITY))?;
        let replica = match get(REPLICA) {
            None => DEFAULT_REPLICA,
            Some(text) => match text.parse::<u32>() {
                Ok(n) if (1..=MAX_REPLICA).contains(&n) => n,
                _ => {
                    return Err(err(
                        REPLICA,
                        format!("{text:?} is not a whole number from 1 to {MAX_REPLICA}"),
                    ));
                }
            },
        };
        if arbiter && replica != 3 {
            return Err(err(
                ARBITER,
                format!("an arbiter needs replica 3 (replica is {replica})"),
            ));
        }
        let brick_root = get(BRICK_ROOT)
            .map(|root| validate_brick_root(root).map(|()| root.to_string()))
            .transpose()
            .map_err(|reason| err(BRICK_ROOT, reason))?;
        let servers = get(SERVERS).map(parse_servers).transpose()?;
        let zones = match get(ZONES) {
            None => ZoneRule::default(),
            Some(text) => ZoneRule::parse(text).ok_or_else(|| {
                err(
                    ZONES,
                    format!("{text:?} is not one of {}", ZoneRule::NAMES.join(", ")),
                )
            })?,
        };
        let pool = get(POOL)
            .map(|pool| {
                if crate::names::is_pool_name(pool) {
                    Ok(pool.to_string())
                } else {
                    Err(err(
                        POOL,
                        format!(
                            "{pool:?} is not a pool name: a gluster volume name (letters, digits, \
                             '-', '_', at most 64, not starting with '-') outside the driver's \
                             own volume names (csi-..., csi_...)"
                        ),
                    ))
                }
            })
            .transpose()?;
        let directory_owner = get(DIRECTORY_OWNER)
            .map(|text| {
                let parsed = text.split_once(':').and_then(|(uid, gid)| {
                    let number = |s: &str| {
                        (!s.is_empty() && s.len() <= 10 && s.bytes().all(|b| b.is_ascii_digit()))
                            .then(|| s.parse::<u32>().ok())
                            .flatten()
                    };
                    Some((number(uid)?, number(gid)?))
                });
                parsed.ok_or_else(|| {
                    err(
                        DIRECTORY_OWNER,
                        format!("{text:?} is not <uid>:<gid> (numbers, e.g. \"1000:1000\")"),
                    )
                })
            })
            .transpose()?;
        if directory_owner.is_some() && pool.is_none() {
            return Err(err(
                DIRECTORY_OWNER,
                format!("only applies with parameters.{POOL} (subdirectory mode)"),
            ));
        }
        use crate::volume_context::{POOL_MOUNT_PER_VOLUME, POOL_MOUNT_SHARED};
        let shared_pool_mount = match get(POOL_MOUNT) {
            None => false,
            Some(POOL_MOUNT_SHARED) => true,
            Some(POOL_MOUNT_PER_VOLUME) => false,
            Some(other) => {
                return Err(err(
                    POOL_MOUNT,
                    format!("{other:?} is not {POOL_MOUNT_SHARED:?} or {POOL_MOUNT_PER_VOLUME:?}"),
                ));
            }
        };
        if get(POOL_MOUNT).is_some() && pool.is_none() {
            return Err(err(
                POOL_MOUNT,
                format!("only applies with parameters.{POOL} (subdirectory mode)"),
            ));
        }
        let volume_options = get(VOLUME_OPTIONS)
            .map(parse_volume_options)
            .transpose()?
            .unwrap_or_default();
        Ok(StorageClassParams {
            replica,
            arbiter,
            brick_root,
            servers,
            volume_options,
            allow_root_filesystem_bricks,
            enforce_capacity,
            zones,
            pool,
            directory_owner,
            shared_pool_mount,
        })
    }

    /// Checks `volumeOptions` keys against what glusterd can set.
    pub fn check_option_keys(&self, settable: &BTreeSet<String>) -> Result<(), ParamError> {
        for (key, _) in &self.volume_options {
            if !key.starts_with("user.") && !settable.contains(key) {
                return Err(err(
                    VOLUME_OPTIONS,
                    format!(
                        "{key:?} is not an option glusterd knows (see `gluster volume set help`)"
                    ),
                ));
            }
        }
        Ok(())
    }
}

fn parse_bool(key: &str, value: Option<&str>) -> Result<Option<bool>, ParamError> {
    match value {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(other) => Err(err(key, format!("{other:?} is not true or false"))),
    }
}

/// An absolute, normalised directory of plain path components.
pub fn validate_brick_root(root: &str) -> Result<(), String> {
    if !root.starts_with('/') {
        return Err(format!("{root:?} is not an absolute path"));
    }
    if root == "/" {
        return Err("bricks directly under / are not allowed".into());
    }
    if root.len() > 1024 {
        return Err("longer than 1024 characters".into());
    }
    for component in root[1..].split('/') {
        if component.is_empty() || component == "." || component == ".." {
            return Err(format!(
                "{root:?} is not normalised (no empty, '.' or '..' components, no trailing '/')"
            ));
        }
        if !component
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-+@".contains(&b))
        {
            return Err(format!(
                "{root:?}: path components may only hold letters, digits and . _ - + @"
            ));
        }
    }
    Ok(())
}

/// A gluster option name like `performance.cache-size`: dotted lowercase
/// parts (which also keeps out `volume set`'s special `group` key).
pub fn is_option_key(key: &str) -> bool {
    key.len() <= 128
        && key.contains('.')
        && key.split('.').all(|part| {
            !part.is_empty()
                && part.as_bytes()[0].is_ascii_lowercase()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// An option value the driver passes to `volume set`.
pub fn is_option_value(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 1024
        && !value.starts_with('-')
        && !value.starts_with(',')
        && !value.ends_with(',')
        && !value.contains(",,")
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:/*%+@-,".contains(&b))
}

fn parse_servers(text: &str) -> Result<Vec<String>, ParamError> {
    let mut servers: Vec<String> = Vec::new();
    for server in text.split(',').map(str::trim) {
        if !is_host_name(server) {
            return Err(err(
                SERVERS,
                format!("{server:?} is not a host name or IPv4 address"),
            ));
        }
        if servers.iter().any(|s| s == server) {
            return Err(err(SERVERS, format!("{server:?} is listed twice")));
        }
        servers.push(server.to_string());
    }
    Ok(servers)
}

/// `key=value` entries: one per line when the text has more than one line
/// (values may then hold commas, as address lists do), else separated by
/// commas.
fn parse_volume_options(text: &str) -> Result<Vec<(String, String)>, ParamError> {
    let mut options: Vec<(String, String)> = Vec::new();
    let entries: Vec<&str> = if text.trim().contains('\n') {
        text.lines().collect()
    } else {
        text.split(',').collect()
    };
    for entry in entries.into_iter().map(str::trim).filter(|e| !e.is_empty()) {
        let (key, value) = entry
            .split_once('=')
            .map(|(k, v)| (k.trim(), v.trim()))
            .ok_or_else(|| err(VOLUME_OPTIONS, format!("{entry:?} is not key=value")))?;
        if !is_option_key(key) {
            return Err(err(
                VOLUME_OPTIONS,
                format!("{key:?} is not a gluster option name like performance.cache-size"),
            ));
        }
        if key.starts_with(RESERVED_PREFIX) {
            return Err(err(
                VOLUME_OPTIONS,
                format!("{key:?}: keys under {RESERVED_PREFIX} are reserved for the driver"),
            ));
        }
        if !is_option_value(value) {
            return Err(err(
                VOLUME_OPTIONS,
                format!(
                    "value {value:?} of {key} may only hold letters, digits and . _ : / * % + @ - \
                     , (not starting with -; commas only between items, with one option per \
                     line)"
                ),
            ));
        }
        if options.iter().any(|(k, _)| k == key) {
            return Err(err(VOLUME_OPTIONS, format!("{key:?} is set twice")));
        }
        options.push((key.to_string(), value.to_string()));
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<StorageClassParams, ParamError> {
        StorageClassParams::parse(
            &pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn defaults() {
        let p = parse(&[]).unwrap();
        assert_eq!(p.replica, 3);
        assert!(!p.arbiter);
        assert_eq!(p.brick_root, None);
        assert_eq!(p.servers, None);
        assert!(p.volume_options.is_empty());
        assert_eq!(p.allow_root_filesystem_bricks, None);
        assert_eq!(p.enforce_capacity, None);
        assert_eq!(p.zones, ZoneRule::Spread);
    }

    #[test]
    fn zones_are_spread_or_distinct() {
        assert_eq!(
            parse(&[("zones", "distinct")]).unwrap().zones,
            ZoneRule::Distinct
        );
        assert_eq!(
            parse(&[("zones", " spread ")]).unwrap().zones,
            ZoneRule::Spread
        );
        for bad in ["Distinct", "strict", "", "distinct,spread"] {
            let e = parse(&[("zones", bad)]).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!(
                    "parameters.zones: {:?} is not one of spread, distinct",
                    bad.trim()
                )
            );
        }
    }

    #[test]
    fn capacity_enforcement_can_be_turned_off() {
        assert_eq!(
            parse(&[("enforceCapacity", "false")])
                .unwrap()
                .enforce_capacity,
            Some(false)
        );
        assert_eq!(
            parse(&[("enforceCapacity", "true")])
                .unwrap()
                .enforce_capacity,
            Some(true)
        );
        for bad in ["no", "off", "False", ""] {
            let e = parse(&[("enforceCapacity", bad)]).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!(
                    "parameters.enforceCapacity: {:?} is not true or false",
                    bad.trim()
                )
            );
        }
    }

    #[test]
    fn root_filesystem_bricks_are_allowed_denied_or_left_to_the_controller() {
        let allowed = parse(&[("allowRootFilesystemBricks", "true")]).unwrap();
        assert_eq!(allowed.allow_root_filesystem_bricks, Some(true));
        let denied = parse(&[("allowRootFilesystemBricks", " false ")]).unwrap();
        assert_eq!(denied.allow_root_filesystem_bricks, Some(false));
        for bad in ["yes", "True", "1", ""] {
            let e = parse(&[("allowRootFilesystemBricks", bad)]).unwrap_err();
            assert_eq!(e.key, "allowRootFilesystemBricks", "{bad:?}");
            assert_eq!(
                e.to_string(),
                format!(
                    "parameters.allowRootFilesystemBricks: {:?} is not true or false",
                    bad.trim()
                )
            );
        }
    }

    #[test]
    fn full_set_and_co_keys_ignored() {
        let p = parse(&[
            ("replica", "3"),
            ("arbiter", "true"),
            ("brickRoot", "/data/glusterfs"),
            ("servers", "node1, node2,10.0.0.3"),
            (
                "volumeOptions",
                "performance.cache-size=64MB, auth.allow=10.0.0.*",
            ),
            ("csi.storage.k8s.io/pvc/name", "data"),
            ("csi.storage.k8s.io/provisioner-secret-name", "x"),
        ])
        .unwrap();
        assert!(p.arbiter);
        assert_eq!(p.brick_root.as_deref(), Some("/data/glusterfs"));
        assert_eq!(p.servers.unwrap(), ["node1", "node2", "10.0.0.3"]);
        assert_eq!(
            p.volume_options,
            [
                ("performance.cache-size".to_string(), "64MB".to_string()),
                ("auth.allow".to_string(), "10.0.0.*".to_string())
            ]
        );
    }

    #[test]
    fn every_bad_value_names_its_key() {
        let cases: &[(&str, &str, &str)] = &[
            ("replica", "0", "replica"),
            ("replica", "17", "replica"),
            ("replica", "three", "replica"),
            ("replica", "-1", "replica"),
            ("arbiter", "yes", "arbiter"),
            (
                "allowRootFilesystemBricks",
                "on",
                "allowRootFilesystemBricks",
            ),
            (
                "AllowRootFilesystemBricks",
                "true",
                "AllowRootFilesystemBricks",
            ),
            ("brickRoot", "data", "brickRoot"),
            ("brickRoot", "/", "brickRoot"),
            ("brickRoot", "/data/../etc", "brickRoot"),
            ("brickRoot", "/data//x", "brickRoot"),
            ("brickRoot", "/data/", "brickRoot"),
            ("brickRoot", "/data/a b", "brickRoot"),
            ("brickRoot", "/data/$(reboot)", "brickRoot"),
            ("brickRoot", "/data;rm -rf /", "brickRoot"),
            ("servers", "a,,b", "servers"),
            ("servers", "a,a", "servers"),
            ("servers", "-oProxyCommand=x", "servers"),
            ("servers", "a b", "servers"),
            ("volumeOptions", "performance.cache-size", "volumeOptions"),
            ("volumeOptions", "nodot=1", "volumeOptions"),
            ("volumeOptions", "user.csi.name=evil", "volumeOptions"),
            ("volumeOptions", "a.b=1,a.b=2", "volumeOptions"),
            ("volumeOptions", "a.b=$(id)", "volumeOptions"),
            ("volumeOptions", "a.b=--help", "volumeOptions"),
            ("volumeOptions", "a.b=x y", "volumeOptions"),
            ("volumeOptions", "A.B=1", "volumeOptions"),
            ("bogus", "1", "bogus"),
            ("Replica", "3", "Replica"),
        ];
        for (key, value, named) in cases {
            let e = parse(&[(key, value)]).unwrap_err();
            assert_eq!(e.key, *named, "{key}={value}: {e}");
            assert!(e.to_string().starts_with(&format!("parameters.{named}: ")));
        }
        let e = parse(&[("arbiter", "true"), ("replica", "2")]).unwrap_err();
        assert_eq!(e.key, "arbiter");
    }

    #[test]
    fn option_keys_checked_against_glusterd() {
        let settable: BTreeSet<String> = ["performance.cache-size".to_string()].into();
        let lines = parse(&[(
            "volumeOptions",
            "auth.allow=10.0.0.1,10.0.0.2\nperformance.cache-size=1MB\n",
        )])
        .unwrap();
        assert_eq!(
            lines.volume_options,
            [
                ("auth.allow".to_string(), "10.0.0.1,10.0.0.2".to_string()),
                ("performance.cache-size".to_string(), "1MB".to_string())
            ]
        );
        let ok = parse(&[("volumeOptions", "performance.cache-size=1MB,user.team=a")]).unwrap();
        assert!(ok.check_option_keys(&settable).is_ok());
        let bad = parse(&[("volumeOptions", "no.such-key=1")]).unwrap();
        assert_eq!(
            bad.check_option_keys(&settable).unwrap_err().key,
            "volumeOptions"
        );
    }

    #[test]
    fn pools_and_directory_owners() {
        let parse = |pairs: &[(&str, &str)]| {
            let map: HashMap<String, String> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            StorageClassParams::parse(&map)
        };
        let ok = parse(&[("pool", "shared"), ("directoryOwner", "1000:2000")]).unwrap();
        assert_eq!(ok.pool.as_deref(), Some("shared"));
        assert_eq!(ok.directory_owner, Some((1000, 2000)));
        assert!(!ok.shared_pool_mount);
        assert!(
            parse(&[("pool", "p"), ("poolMount", "shared")])
                .unwrap()
                .shared_pool_mount
        );
        assert!(
            !parse(&[("pool", "p"), ("poolMount", "perVolume")])
                .unwrap()
                .shared_pool_mount
        );
        for (pairs, key) in [
            (&[("pool", "csi-x")][..], "pool"),
            (&[("pool", "a/b")][..], "pool"),
            (&[("pool", "-x")][..], "pool"),
            (
                &[("pool", "p"), ("directoryOwner", "1000")][..],
                "directoryOwner",
            ),
            (
                &[("pool", "p"), ("directoryOwner", "a:b")][..],
                "directoryOwner",
            ),
            (
                &[("pool", "p"), ("directoryOwner", "1:99999999999")][..],
                "directoryOwner",
            ),
            (&[("directoryOwner", "1:1")][..], "directoryOwner"),
            (&[("poolMount", "shared")][..], "poolMount"),
            (&[("pool", "p"), ("poolMount", "Shared")][..], "poolMount"),
            (&[("pool", "p"), ("poolMount", "")][..], "poolMount"),
        ] {
            let e = parse(pairs).unwrap_err();
            assert_eq!(e.key, key, "{pairs:?}: {e}");
        }
    }
}

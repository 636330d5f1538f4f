//! Request validation shared by the CSI services. Every error is
//! INVALID_ARGUMENT and names the field as the CSI spec spells it.

use std::fmt::Display;
use std::path::PathBuf;

use tonic::Status;

use crate::controller::CapacityRange;
use crate::names::{PoolDirectory, VolumeName};
use crate::node::MountOptions;
use crate::proto::csi;
use crate::proto::csi::volume_capability::AccessType;
use crate::proto::csi::volume_capability::access_mode::Mode;
use crate::volume_context::{MAX_VOLUME_ID, VolumeContext};

pub fn invalid(field: &str, reason: impl Display) -> Status {
    Status::invalid_argument(format!("{field}: {reason}"))
}

pub fn required<'a>(field: &str, value: &'a str) -> Result<&'a str, Status> {
    if value.is_empty() {
        Err(invalid(field, "missing"))
    } else {
        Ok(value)
    }
}

/// Volume ids come from us or from a static PV: printable, bounded.
pub fn volume_id<'a>(field: &str, value: &'a str) -> Result<&'a str, Status> {
    required(field, value)?;
    if value.len() > MAX_VOLUME_ID || value.chars().any(char::is_control) {
        return Err(invalid(
            field,
            format!("must be at most {MAX_VOLUME_ID} printable characters"),
        ));
    }
    Ok(value)
}

/// An absolute, normalised path without control characters.
pub fn path(field: &str, value: &str) -> Result<PathBuf, Status> {
    required(field, value)?;
    if !value.starts_with('/') {
        return Err(invalid(field, format!("{value:?} is not an absolute path")));
    }
    if value.len() > 4096 || value.chars().any(char::is_control) {
        return Err(invalid(field, "too long or holds control characters"));
    }
    let normalised = value == "/"
        || value[1..]
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..");
    if !normalised {
        return Err(invalid(
            field,
            format!("{value:?} is not normalised (no '.', '..', '//' or trailing '/')"),
        ));
    }
    Ok(PathBuf::from(value))
}

/// Characters mount.glusterfs, a shell script, splits a path on or expands
/// (it runs its command line unquoted, through `echo`).
const SHELL_SPECIAL: &str = " \t*?[]\\'\"$`;&|<>(){}";

/// A staging path: a valid path that mount.glusterfs can also take.
pub fn staging_path(field: &str, value: &str) -> Result<PathBuf, Status> {
    let path = path(field, value)?;
    if let Some(bad) = value.chars().find(|c| SHELL_SPECIAL.contains(*c)) {
        return Err(invalid(
            field,
            format!("{value:?} holds {bad:?}, which mount.glusterfs cannot take in a mount point"),
        ));
    }
    Ok(path)
}

/// A driver-made volume id names its gluster volume: a context naming
/// another one would mount the wrong volume.
pub fn context_matches_id(id: &str, context: &VolumeContext) -> Result<(), Status> {
    let named = VolumeName::parse(id)
        .map(|name| name.to_string())
        .or_else(|| PoolDirectory::parse(id).map(|id| id.to_string()));
    match named {
        Some(name) if name != context.volume => Err(invalid(
            "volume_context.volume",
            format!(
                "{:?} is not the volume {id:?} names; the context must come with its own volume",
                context.volume
            ),
        )),
        _ => Ok(()),
    }
}

/// What a valid volume capability asks of a mount.
#[derive(Debug, Default, Clone)]
pub struct MountRequest {
    pub read_only: bool,
    /// SINGLE_NODE_SINGLE_WRITER: one publication at a time.
    pub single_writer: bool,
    pub options: MountOptions,
}

/// Why a capability is unsupported: the sub-field at fault and the reason.
#[derive(Debug, PartialEq, Eq)]
pub struct Unsupported {
    pub field: &'static str,
    pub reason: String,
}

impl Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

fn unsupported(field: &'static str, reason: impl Into<String>) -> Unsupported {
    Unsupported {
        field,
        reason: reason.into(),
    }
}

/// Checks one capability.
pub fn capability(cap: &csi::VolumeCapability) -> Result<MountRequest, Unsupported> {
    let mode = cap
        .access_mode
        .as_ref()
        .and_then(|m| Mode::try_from(m.mode).ok())
        .unwrap_or(Mode::Unknown);
    if mode == Mode::Unknown {
        return Err(unsupported("access_mode", "missing or unknown"));
    }
    let read_only = matches!(mode, Mode::SingleNodeReaderOnly | Mode::MultiNodeReaderOnly);
    match &cap.access_type {
        None => Err(unsupported("access_type", "missing (mount)")),
        Some(AccessType::Block(_)) => Err(unsupported(
            "block",
            "raw block volumes are not supported; GlusterFS volumes are file systems",
        )),
        Some(AccessType::Mount(mount)) => {
            if !matches!(mount.fs_type.as_str(), "" | "glusterfs") {
                return Err(unsupported(
                    "mount.fs_type",
                    format!("{:?} is not supported; only glusterfs", mount.fs_type),
                ));
            }
            let options = MountOptions::parse(mount.mount_flags.iter().map(String::as_str))
                .map_err(|e| unsupported("mount.mount_flags", e))?;
            Ok(MountRequest {
                read_only: read_only || options.read_only(),
                single_writer: mode == Mode::SingleNodeSingleWriter,
                options,
            })
        }
    }
}

/// A required single capability (node RPCs).
pub fn required_capability(
    field: &str,
    cap: Option<&csi::VolumeCapability>,
) -> Result<MountRequest, Status> {
    let cap = cap.ok_or_else(|| invalid(field, "missing"))?;
    capability(cap).map_err(|u| invalid(&format!("{field}.{}", u.field), u.reason))
}

/// A required non-empty list of capabilities (controller RPCs).
pub fn capabilities(field: &str, caps: &[csi::VolumeCapability]) -> Result<(), Status> {
    if caps.is_empty() {
        return Err(invalid(field, "missing"));
    }
    for (i, cap) in caps.iter().enumerate() {
        capability(cap).map_err(|u| invalid(&format!("{field}[{i}].{}", u.field), u.reason))?;
    }
    Ok(())
}

pub fn capacity(range: Option<&csi::CapacityRange>) -> Result<CapacityRange, Status> {
    let Some(range) = range else {
        return Ok(CapacityRange::default());
    };
    let bytes = |field: &str, value: i64| {
        u64::try_from(value).map_err(|_| invalid(field, format!("{value} is negative")))
    };
    let required_bytes = bytes("capacity_range.required_bytes", range.required_bytes)?;
    let limit_bytes = bytes("capacity_range.limit_bytes", range.limit_bytes)?;
    if limit_bytes > 0 && required_bytes > limit_bytes {
        return Err(invalid(
            "capacity_range",
            format!("required_bytes {required_bytes} exceeds limit_bytes {limit_bytes}"),
        ));
    }
    Ok(CapacityRange {
        required_bytes,
        limit_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::csi::volume_capability::{AccessMode, BlockVolume, MountVolume};

    fn mount_cap(mode: Mode, fs_type: &str, flags: &[&str]) -> csi::VolumeCapability {
        csi::VolumeCapability {
            access_mode: Some(AccessMode { mode: mode as i32 }),
            access_type: Some(AccessType::Mount(MountVolume {
                fs_type: fs_type.into(),
                mount_flags: flags.iter().map(|f| f.to_string()).collect(),
                volume_mount_group: String::new(),
            })),
        }
    }

    #[test]
    fn paths() {
        assert!(
            path(
                "target_path",
                "/var/lib/kubelet/pods/x/volumes/kubernetes.io~csi/pv/mount"
            )
            .is_ok()
        );
        for bad in ["", "relative", "/a/../b", "/a/./b", "/a//b", "/a/", "/a\nb"] {
            let e = path("target_path", bad).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument);
            assert!(e.message().starts_with("target_path: "), "{}", e.message());
        }
    }

    #[test]
    fn staging_paths_mount_glusterfs_can_take() {
        let kubelet =
            "/var/lib/kubelet/plugins/kubernetes.io/csi/glusterfs.csi.io/0a1b/globalmount";
        assert!(staging_path("staging_target_path", kubelet).is_ok());
        for bad in [
            "/a b/globalmount",
            "/a\tb",
            "/a*b",
            "/a?b",
            "/a[1]",
            "/a\\b",
            "/a$(id)",
        ] {
            let err = staging_path("staging_target_path", bad).unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{bad:?}");
            assert!(
                err.message().starts_with("staging_target_path: "),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_context_must_name_the_volume_its_id_names() {
        let context = |volume: &str| VolumeContext::new(volume, &["a".into()], vec![]).unwrap();
        assert!(context_matches_id("csi-pvc-1", &context("csi-pvc-1")).is_ok());
        let err = context_matches_id("csi-pvc-1", &context("csi-pvc-2")).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(
            err.message().starts_with("volume_context.volume: "),
            "{err:?}"
        );
        // A static PV's own id names nothing: its context decides.
        assert!(context_matches_id("my-static-pv", &context("shared")).is_ok());
    }

    #[test]
    fn capabilities_name_the_bad_field() {
        let ok = mount_cap(Mode::MultiNodeMultiWriter, "", &["acl"]);
        assert!(capabilities("volume_capabilities", std::slice::from_ref(&ok)).is_ok());
        let ro = capability(&mount_cap(Mode::MultiNodeReaderOnly, "glusterfs", &[])).unwrap();
        assert!(ro.read_only);

        let block = csi::VolumeCapability {
            access_mode: Some(AccessMode {
                mode: Mode::SingleNodeWriter as i32,
            }),
            access_type: Some(AccessType::Block(BlockVolume {})),
        };
        let cases = [
            (vec![], "volume_capabilities: missing"),
            (vec![block], "volume_capabilities[0].block: "),
            (
                vec![ok.clone(), mount_cap(Mode::Unknown, "", &[])],
                "volume_capabilities[1].access_mode: ",
            ),
            (
                vec![mount_cap(Mode::SingleNodeWriter, "ext4", &[])],
                "volume_capabilities[0].mount.fs_type: ",
            ),
            (
                vec![mount_cap(Mode::SingleNodeWriter, "", &["log-file=/etc/x"])],
                "volume_capabilities[0].mount.mount_flags: ",
            ),
        ];
        for (caps, prefix) in cases {
            let e = capabilities("volume_capabilities", &caps).unwrap_err();
            assert!(
                e.message().starts_with(prefix),
                "{} !~ {prefix}",
                e.message()
            );
        }
    }

    #[test]
    fn capacity_ranges() {
        let range = |r, l| csi::CapacityRange {
            required_bytes: r,
            limit_bytes: l,
        };
        assert_eq!(capacity(None).unwrap(), CapacityRange::default());
        assert_eq!(capacity(Some(&range(10, 0))).unwrap().required_bytes, 10);
        assert!(capacity(Some(&range(-1, 0))).is_err());
        assert!(capacity(Some(&range(10, 5))).is_err());
    }
}

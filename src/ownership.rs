//! How the driver marks the gluster volumes it made, and how it tells them
//! from volumes it must never touch.
//!
//! Marks are `user.*` volume options (free-form keys glusterd stores and
//! replicates without interpreting them), so glusterd stays the only source
//! of truth and `gluster volume info` shows an admin what the driver owns.

use crate::gluster::{VolumeInfo, VolumeStatus};
use crate::names::VolumeName;

/// The CSI name the volume was created for.
pub const OPT_CSI_NAME: &str = "user.csi.name";
/// Requested capacity in bytes.
pub const OPT_CSI_SIZE: &str = "user.csi.size";
/// A pool of subdirectory mode (`created` by the driver, or `adopted` by the
/// operator): the driver makes directories at its top, and never deletes it.
pub const OPT_CSI_POOL: &str = "user.csi.pool";
/// Set (to a Unix timestamp) once deletion began; never cleared.
pub const OPT_CSI_DELETING: &str = "user.csi.deleting";
/// `user.csi.name` given to an unmarked half-made volume when it is removed.
pub const INTERRUPTED_CREATE: &str = "interrupted-create";
/// Prefix reserved for the marks above.
pub const RESERVED_PREFIX: &str = "user.csi.";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ownership {
    /// Carries the driver's marks.
    Ours {
        csi_name: String,
        size_bytes: u64,
        deleting: bool,
    },
    /// Made by the driver's `volume create`, which was interrupted before the
    /// marks were set: a driver-shaped name, never started, no options, and
    /// every brick directory named after the volume.
    Unmarked,
    /// Anything else: not the driver's to change.
    Foreign,
}

impl Ownership {
    pub fn of(volume: &VolumeInfo) -> Ownership {
        if let Some(csi_name) = volume.options.get(OPT_CSI_NAME) {
            return Ownership::Ours {
                csi_name: csi_name.clone(),
                size_bytes: volume
                    .options
                    .get(OPT_CSI_SIZE)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0),
                deleting: volume.options.contains_key(OPT_CSI_DELETING),
            };
        }
        let driver_shaped = VolumeName::parse(&volume.name).is_some()
            && volume.status == VolumeStatus::Created
            && !volume.options.keys().any(|k| k.starts_with("user."))
            && !volume.bricks.is_empty()
            && volume
                .bricks
                .iter()
                .all(|b| b.path.rsplit('/').next() == Some(volume.name.as_str()));
        if driver_shaped {
            Ownership::Unmarked
        } else {
            Ownership::Foreign
        }
    }

    pub fn is_ours(&self) -> bool {
        !matches!(self, Ownership::Foreign)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakes::volume_info as volume;

    #[test]
    fn marked_volumes_are_ours() {
        let v = volume(
            "csi-pvc-1",
            VolumeStatus::Started,
            &[(OPT_CSI_NAME, "pvc-1"), (OPT_CSI_SIZE, "1024")],
        );
        assert_eq!(
            Ownership::of(&v),
            Ownership::Ours {
                csi_name: "pvc-1".into(),
                size_bytes: 1024,
                deleting: false
            }
        );
        let v = volume(
            "csi-pvc-1",
            VolumeStatus::Stopped,
            &[(OPT_CSI_NAME, "pvc-1"), (OPT_CSI_DELETING, "1")],
        );
        assert!(matches!(
            Ownership::of(&v),
            Ownership::Ours { deleting: true, .. }
        ));
    }

    #[test]
    fn interrupted_create_is_recognised_only_in_its_exact_shape() {
        let v = volume("csi-pvc-1", VolumeStatus::Created, &[]);
        assert_eq!(Ownership::of(&v), Ownership::Unmarked);
        // Started, or named outside the namespace, or with an admin's marks,
        // or with bricks not named after it: not ours.
        assert_eq!(
            Ownership::of(&volume("csi-pvc-1", VolumeStatus::Started, &[])),
            Ownership::Foreign
        );
        assert_eq!(
            Ownership::of(&volume("gv0", VolumeStatus::Created, &[])),
            Ownership::Foreign
        );
        assert_eq!(
            Ownership::of(&volume(
                "csi-pvc-1",
                VolumeStatus::Created,
                &[("user.x", "1")]
            )),
            Ownership::Foreign
        );
        let mut v = volume("csi-pvc-1", VolumeStatus::Created, &[]);
        v.bricks[0].path = "/data/brick1".into();
        assert_eq!(Ownership::of(&v), Ownership::Foreign);
    }
}

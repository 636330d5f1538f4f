//! The controller's periodic look at the volumes it made, for the metrics:
//! how many are in each state, and each one's health (bricks down, entries
//! pending heal, split-brain), computed as ControllerGetVolume does. Read
//! from glusterd every time, like everything else the controller knows.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;

use super::{HEALTH_PARALLELISM, Provisioner};
use crate::gluster::{GlusterError, VolumeInfo, VolumeStatus};
use crate::metrics::{self, VolumeState};
use crate::ownership::Ownership;

/// Surveys every `interval` until the task is dropped.
pub async fn run(provisioner: Arc<Provisioner>, interval: Duration) {
    loop {
        if let Err(e) = survey(&provisioner).await {
            metrics::record_volume_survey_failure();
            tracing::warn!(error = %e, "volume metrics: cannot read glusterd's volumes");
        }
        tokio::time::sleep(interval).await;
    }
}

/// One survey: records the volumes-by-state gauges and each volume's
/// health ([`HEALTH_PARALLELISM`] at a time), and drops the health series of
/// volumes that are gone or whose health cannot be read now (a stale "0
/// bricks down" would be worse than none).
pub async fn survey(provisioner: &Provisioner) -> Result<(), GlusterError> {
    let volumes = provisioner.glusterd().volumes().await?;
    let ours = census(&volumes);
    metrics::record_volume_states(ours.iter().map(|(_, state)| *state));
    let slots = tokio::sync::Semaphore::new(HEALTH_PARALLELISM);
    let healths = join_all(
        ours.iter()
            .filter(|(_, state)| *state != VolumeState::Deleting)
            .map(|(volume, _)| async {
                let _slot = slots.acquire().await.ok();
                (volume.name.as_str(), provisioner.health_of(volume).await)
            }),
    )
    .await;
    let mut present = BTreeSet::new();
    for (volume, health) in healths {
        match health {
            Ok(health) => {
                metrics::record_volume_health(
                    volume,
                    u64::try_from(health.bricks_down.len()).unwrap_or(u64::MAX),
                    health.heal_pending(),
                    health.split_brain(),
                );
                present.insert(volume.to_string());
            }
            Err(e) => {
                tracing::warn!(volume, error = %e, "volume metrics: cannot read the volume's health")
            }
        }
    }
    metrics::retain_volume_health(&present);
    Ok(())
}

/// The driver's volumes (those with its marks, as ListVolumes tells them;
/// including those being deleted, which ListVolumes leaves out) and their
/// states.
pub fn census(volumes: &[VolumeInfo]) -> Vec<(&VolumeInfo, VolumeState)> {
    volumes
        .iter()
        .filter_map(|volume| match Ownership::of(volume) {
            Ownership::Ours { deleting: true, .. } => Some((volume, VolumeState::Deleting)),
            Ownership::Ours { .. } => Some((volume, state_of(&volume.status))),
            Ownership::Unmarked | Ownership::Foreign => None,
        })
        .collect()
}

fn state_of(status: &VolumeStatus) -> VolumeState {
    match status {
        VolumeStatus::Created => VolumeState::Created,
        VolumeStatus::Started => VolumeState::Started,
        VolumeStatus::Stopped => VolumeState::Stopped,
        VolumeStatus::Other(_) => VolumeState::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakes::volume_info as volume;
    use crate::ownership::{OPT_CSI_DELETING, OPT_CSI_NAME, OPT_CSI_SIZE};

    #[test]
    fn only_the_drivers_volumes_are_counted_by_state() {
        let marked = [(OPT_CSI_NAME, "pvc-1"), (OPT_CSI_SIZE, "1024")];
        let deleting = [(OPT_CSI_NAME, "pvc-3"), (OPT_CSI_DELETING, "1700000000")];
        let volumes = [
            volume("csi-pvc-1", VolumeStatus::Started, &marked),
            volume("csi-pvc-2", VolumeStatus::Stopped, &marked),
            volume("csi-pvc-3", VolumeStatus::Stopped, &deleting),
            volume("csi-pvc-4", VolumeStatus::Other("weird".into()), &marked),
            volume("csi-pvc-5", VolumeStatus::Created, &marked),
            // Someone else's volume, and a create interrupted before the marks.
            volume("shared", VolumeStatus::Started, &[]),
            volume("csi-pvc-6", VolumeStatus::Created, &[]),
        ];
        let states: Vec<(&str, VolumeState)> = census(&volumes)
            .into_iter()
            .map(|(v, s)| (v.name.as_str(), s))
            .collect();
        assert_eq!(
            states,
            [
                ("csi-pvc-1", VolumeState::Started),
                ("csi-pvc-2", VolumeState::Stopped),
                ("csi-pvc-3", VolumeState::Deleting),
                ("csi-pvc-4", VolumeState::Other),
                ("csi-pvc-5", VolumeState::Created),
            ]
        );
    }
}

//! The controller's periodic look at the volumes it made, for the metrics:
//! how many are in each state, and (once wired) each one's health. Read
//! from glusterd every time, like everything else the controller knows.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use crate::gluster::{GlusterError, Glusterd, VolumeInfo, VolumeStatus};
use crate::metrics::{self, VolumeState};
use crate::ownership::Ownership;

/// Surveys every `interval` until the task is dropped.
pub async fn run(glusterd: Arc<dyn Glusterd>, interval: Duration) {
    loop {
        if let Err(e) = survey(glusterd.as_ref()).await {
            metrics::record_volume_survey_failure();
            tracing::warn!(error = %e, "volume metrics: cannot read glusterd's volumes");
        }
        tokio::time::sleep(interval).await;
    }
}

/// One survey: records the volumes-by-state gauges and drops the health
/// series of volumes that are gone.
pub async fn survey(glusterd: &dyn Glusterd) -> Result<(), GlusterError> {
    let volumes = glusterd.volumes().await?;
    let ours = census(&volumes);
    metrics::record_volume_states(ours.iter().map(|(_, state)| *state));
    // HEALTH HOOK (issue 9, item 4): for each of `ours` that is started,
    // compute its health with controller::health and call
    // metrics::record_volume_health(volume.name, bricks_down, heal_pending,
    // split_brain). The line below already drops the series of volumes
    // that no longer exist.
    let present: BTreeSet<String> = ours.iter().map(|(v, _)| v.name.clone()).collect();
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
